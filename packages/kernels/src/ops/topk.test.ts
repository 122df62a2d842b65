import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, type Tensor, backward, scope, slice, tensor } from '../index.js';
import { ssvpSelect, topk } from '../nn/ssvp.js';
import { Rng, assertClose, dot, f64, gatherTokensBackwardRef, gatherTokensRef, numericGrad, testDevice, topkRef } from '../testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(5);

async function gpuTopk(scores: Float32Array, B: number, N: number, K: number): Promise<Int32Array> {
  const ids = scope(() => topk(tensor(dev, scores, [B, N]), K));
  const got = (await ids.read()) as Int32Array;
  ids.dispose();
  return got;
}

describe('topk float64 reference', () => {
  it('orders by value, ties to the lower index, NaN lowest, indices ascending', () => {
    const s = [3, NaN, 5, 5, -Infinity, -0, 0, 5];
    expect([...topkRef(s, 1, 8, 2)]).toEqual([2, 3]);
    expect([...topkRef(s, 1, 8, 5)]).toEqual([0, 2, 3, 5, 7]);
    expect([...topkRef(s, 1, 8, 7)]).toEqual([0, 2, 3, 4, 5, 6, 7]);
    expect([...topkRef(s, 1, 8, 8)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('gather backward matches finite differences', () => {
    const [B, N, D, K] = [2, 6, 3, 3];
    const x = f64(rng.normal(B * (N + 1) * D), [B, N + 1, D]);
    const ids = topkRef(rng.normal(B * N), B, N, K);
    const w = f64(rng.normal(B * (K + 1) * D), [B, K + 1, D]);
    const g = gatherTokensBackwardRef(w, ids, N);
    assertClose(g.data, numericGrad((xd) => dot(w.data, gatherTokensRef({ data: xd, shape: x.shape }, ids, K).data), x.data), { atol: 1e-8, rtol: 1e-7 }, 'dx');
  });
});

describe('topk (GPU vs reference)', () => {
  const cases: [string, number, number, number, (n: number) => Float32Array][] = [
    ['single score', 1, 1, 1, (n) => rng.normal(n)],
    ['K = 1', 3, 5, 1, (n) => rng.normal(n)],
    ['K = N', 2, 17, 17, (n) => rng.normal(n)],
    ['ViT-B/16@448 default K', 4, 784, 12, (n) => rng.uniform(n, 0, 1)],
    ['N = 1024, K = 64', 3, 1024, 64, (n) => rng.normal(n)],
    ['N beyond 1024 (3001), K = 64', 2, 3001, 64, (n) => rng.normal(n)],
    ['all equal', 2, 257, 12, (n) => new Float32Array(n).fill(0.25)],
    ['duplicates', 3, 300, 40, (n) => Float32Array.from(rng.ints(n, 7), (v) => v / 4)],
    ['negatives and infinities', 2, 50, 10, (n) => Float32Array.from(rng.normal(n), (v, i) => (i % 11 === 0 ? -Infinity : i % 13 === 0 ? Infinity : -Math.abs(v)))],
    ['signed zeros tie by index', 1, 9, 4, () => Float32Array.from([-0, 0, -1, -0, 0, -2, -0, 0, -3])],
    ['NaN ranks lowest', 2, 40, 30, (n) => Float32Array.from(rng.normal(n), (v, i) => (i % 3 === 0 ? NaN : v))],
    ['all NaN', 1, 20, 5, (n) => new Float32Array(n).fill(NaN)],
  ];
  for (const [what, B, N, K, gen] of cases) {
    it(`${what}: B${B} N${N} K${K}`, async () => {
      const s = gen(B * N);
      const got = await gpuTopk(s, B, N, K);
      expect([...got]).toEqual([...topkRef(s, B, N, K)]);
    });
  }

  it('reads a strided score view', async () => {
    const [B, N, K] = [3, 40, 7];
    const s = rng.normal(B * (N + 5));
    const got = scope(() => topk(slice(tensor(dev, s, [B, N + 5]), 1, 5, N + 5), K));
    const sub = new Float32Array(B * N);
    for (let b = 0; b < B; b++) for (let j = 0; j < N; j++) sub[b * N + j] = s[b * (N + 5) + 5 + j]!;
    expect([...((await got.read()) as Int32Array)]).toEqual([...topkRef(sub, B, N, K)]);
    got.dispose();
  });

  it('names the op and shapes on bad k', () => {
    scope(() => {
      const s = tensor(dev, rng.normal(10), [2, 5]);
      expect(() => topk(s, 6)).toThrow(/topk: k = 6 outside \[1, N = 5\] for scores \[2, 5\]/);
      expect(() => ssvpSelect(tensor(dev, rng.normal(2 * 5 * 3), [2, 5, 3]), s, 2)).toThrow(/x must be f32 \(B, N\+1, D\).*\[2, 5, 3\]/);
    });
  });
});

describe('ssvpSelect: fused gather and its backward', () => {
  const cases: [number, number, number, number][] = [
    [1, 1, 1, 8],
    [2, 5, 5, 3],
    [3, 17, 4, 33],
    [2, 784, 12, 768],
  ];
  for (const [B, N, K, D] of cases) {
    it(`B${B} N${N} K${K} D${D}`, async () => {
      const x = rng.normal(B * (N + 1) * D);
      const s = rng.normal(B * N);
      const w = rng.normal(B * (K + 1) * D);
      const [tokens, ids, gx] = await (async () => {
        const xt = tensor(dev, x, [B, N + 1, D], { requiresGrad: true });
        const r = scope(() => {
          const sel = ssvpSelect(xt, tensor(dev, s, [B, N]), K);
          backward(sel.tokens, tensor(dev, w, [B, K + 1, D]));
          return sel;
        });
        const out = [await r.tokens.read(), await r.ids.read(), await (xt.grad as Tensor).read()] as const;
        for (const t of [r.tokens, r.ids, xt]) t.dispose();
        return out;
      })();
      const wantIds = topkRef(s, B, N, K);
      expect([...ids]).toEqual([...wantIds]);
      assertClose(tokens, gatherTokensRef(f64(x, [B, N + 1, D]), wantIds, K).data, { atol: 0, rtol: 0 }, 'tokens');
      assertClose(gx, gatherTokensBackwardRef(f64(w, [B, K + 1, D]), wantIds, N).data, { atol: 0, rtol: 0 }, 'dx');
    });
  }

  it('gathers from a strided view of the penultimate output', async () => {
    const [B, N, K, D] = [2, 9, 3, 4];
    const x = rng.normal(B * (N + 1) * 2 * D);
    const s = rng.normal(B * N);
    const r = scope(() => ssvpSelect(slice(tensor(dev, x, [B, N + 1, 2 * D]), 2, D, 2 * D), tensor(dev, s, [B, N]), K));
    const dense = new Float32Array(B * (N + 1) * D);
    for (let i = 0; i < B * (N + 1); i++) for (let c = 0; c < D; c++) dense[i * D + c] = x[i * 2 * D + D + c]!;
    assertClose(await r.tokens.read(), gatherTokensRef(f64(dense, [B, N + 1, D]), topkRef(s, B, N, K), K).data, { atol: 0, rtol: 0 }, 'tokens');
    r.tokens.dispose();
    r.ids.dispose();
  });
});
