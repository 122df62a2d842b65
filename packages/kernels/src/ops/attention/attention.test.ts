import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, type Tensor, backward, permute, scope, tensor } from '../../index.js';
import { attention, attentionWithLse, clsAttentionScores } from '../../nn/attention.js';
import {
  type AttentionRefOptions,
  Rng,
  assertClose,
  attentionBackwardRef,
  attentionRef,
  clsAttentionScoresRef,
  dot,
  f64,
  numericGrad,
  testDevice,
} from '../../testing/index.js';
import { fixedSubgroupSize, isCpuAdapter } from '../adapter.js';
import { ATTENTION_KERNELS, type AttentionOptions, attentionKernel, launchAttention, launchAttentionBackward } from './index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(11);

interface Case {
  B: number;
  H: number;
  Nq: number;
  Nk?: number;
  d: number;
  opts?: AttentionRefOptions & AttentionOptions;
}

const label = (c: Case) => `B${c.B} H${c.H} Nq${c.Nq} Nk${c.Nk ?? c.Nq} d${c.d}${c.opts ? ` ${JSON.stringify(c.opts)}` : ''}`;

function data(c: Case) {
  const Nk = c.Nk ?? c.Nq;
  const qs = [c.B, c.H, c.Nq, c.d];
  const ks = [c.B, c.H, Nk, c.d];
  return {
    qs,
    ks,
    q: rng.normal(c.B * c.H * c.Nq * c.d),
    k: rng.normal(c.B * c.H * Nk * c.d),
    v: rng.normal(c.B * c.H * Nk * c.d),
    w: rng.normal(c.B * c.H * c.Nq * c.d),
  };
}

describe('attention float64 reference backward', () => {
  const cases: Case[] = [
    { B: 1, H: 2, Nq: 5, d: 4 },
    { B: 2, H: 1, Nq: 4, d: 3, opts: { causal: true } },
    { B: 1, H: 1, Nq: 3, Nk: 6, d: 2, opts: { keyLength: 4, scale: 0.7 } },
  ];
  for (const c of cases) {
    it(`matches finite differences: ${label(c)}`, () => {
      const x = data(c);
      const q = f64(x.q, x.qs);
      const k = f64(x.k, x.ks);
      const v = f64(x.v, x.ks);
      const w = f64(x.w, x.qs);
      const g = attentionBackwardRef(q, k, v, w, c.opts);
      const loss = () => dot(w.data, attentionRef(q, k, v, c.opts).out.data);
      assertClose(g.dq.data, numericGrad(() => loss(), q.data), { atol: 1e-7, rtol: 1e-6 }, 'dq');
      assertClose(g.dk.data, numericGrad(() => loss(), k.data), { atol: 1e-7, rtol: 1e-6 }, 'dk');
      assertClose(g.dv.data, numericGrad(() => loss(), v.data), { atol: 1e-7, rtol: 1e-6 }, 'dv');
    });
  }
});

describe('attention forward', () => {
  const cases: Case[] = [
    { B: 1, H: 1, Nq: 1, d: 8 },
    { B: 2, H: 3, Nq: 5, d: 8 },
    { B: 2, H: 2, Nq: 17, d: 16 },
    { B: 2, H: 2, Nq: 17, d: 16, opts: { causal: true } },
    { B: 1, H: 3, Nq: 17, d: 8, opts: { keyLength: 11 } },
    { B: 3, H: 2, Nq: 20, d: 64, opts: { causal: true, keyLength: 13 } },
    { B: 1, H: 2, Nq: 5, Nk: 37, d: 5, opts: { scale: 0.3 } },
    { B: 1, H: 2, Nq: 5, Nk: 37, d: 8, opts: { scale: 0.3 } },
    { B: 1, H: 1, Nq: 70, d: 64 },
    { B: 2, H: 1, Nq: 70, d: 16, opts: { causal: true } },
    { B: 1, H: 2, Nq: 41, Nk: 70, d: 8, opts: { keyLength: 45 } },
    { B: 1, H: 2, Nq: 785, d: 64 },
    // The lane kernels with 8-lane subgroups (the default up to d 32 at any length; every compiled
    // head dim, queries and keys not a multiple of 8), and without: both score-array sizes, and
    // their limit.
    { B: 2, H: 2, Nq: 65, d: 16 },
    { B: 1, H: 2, Nq: 13, Nk: 300, d: 4, opts: { keyLength: 290, kernel: 'lanes' } },
    { B: 2, H: 1, Nq: 33, d: 32, opts: { causal: true, kernel: 'lanes' } },
    { B: 1, H: 2, Nq: 9, Nk: 21, d: 12, opts: { scale: 0.3, kernel: 'lanes' } },
    { B: 2, H: 2, Nq: 30, d: 64, opts: { keyLength: 27, kernel: 'lanes' } },
    { B: 2, H: 2, Nq: 17, d: 16, opts: { causal: true, kernel: 'lanes', subgroups: false } },
    { B: 2, H: 2, Nq: 65, d: 16, opts: { kernel: 'lanes', subgroups: false } },
    { B: 1, H: 1, Nq: 3, Nk: 256, d: 4, opts: { keyLength: 250, kernel: 'lanes', subgroups: false } },
    // The subgroup kernels, which CPU adapters take beyond 256 keys.
    { B: 2, H: 2, Nq: 17, d: 16, opts: { causal: true, kernel: 'subgroup' } },
    { B: 3, H: 2, Nq: 20, d: 64, opts: { causal: true, keyLength: 13, kernel: 'subgroup' } },
    { B: 1, H: 2, Nq: 41, Nk: 70, d: 8, opts: { keyLength: 45, kernel: 'subgroup' } },
    // The portable kernels, which adapters without fixed 8-lane subgroups and heads wider than 64 run.
    { B: 1, H: 1, Nq: 9, d: 128 },
    { B: 1, H: 2, Nq: 5, Nk: 37, d: 8, opts: { scale: 0.3, subgroups: false } },
    { B: 2, H: 1, Nq: 70, d: 16, opts: { causal: true, keyLength: 50, subgroups: false } },
  ];
  for (const c of cases) {
    it(label(c), async () => {
      const x = data(c);
      const r = scope(() => launchAttention(tensor(dev, x.q, x.qs), tensor(dev, x.k, x.ks), tensor(dev, x.v, x.ks), c.opts));
      const want = attentionRef(f64(x.q, x.qs), f64(x.k, x.ks), f64(x.v, x.ks), c.opts);
      expect(r.out.shape).toEqual(x.qs);
      assertClose(await r.out.read(), want.out.data, { atol: 2e-5, rtol: 1e-4 }, 'out');
      assertClose(await r.lse.read(), want.lse.data, { atol: 2e-5, rtol: 1e-5 }, 'lse');
      r.out.dispose();
      r.lse.dispose();
    });
  }

  it('stores the output heads-last, so merging heads needs no copy', () => {
    const x = data({ B: 2, H: 3, Nq: 4, d: 8 });
    scope(() => {
      const out = attention(tensor(dev, x.q, x.qs), tensor(dev, x.k, x.ks), tensor(dev, x.v, x.ks));
      expect(permute(out, [0, 2, 1, 3]).isContiguous()).toBe(true);
    });
  });

  it('reads q, k, v as views of one (B, N, 3, H, d) projection', async () => {
    const [B, N, H, d] = [2, 9, 3, 8];
    const qkv = rng.normal(B * N * 3 * H * d);
    const pick = (which: number) => {
      const out = new Float32Array(B * H * N * d);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let n = 0; n < N; n++)
            for (let c = 0; c < d; c++) out[((b * H + h) * N + n) * d + c] = qkv[(((b * N + n) * 3 + which) * H + h) * d + c]!;
      return out;
    };
    const shape = [B, H, N, d];
    const got = scope(() => {
      const t = tensor(dev, qkv, [B, N, 3, H, d]);
      const view = (which: number) => t.view(shape, [t.strides[0]!, t.strides[3]!, t.strides[1]!, 1], which * H * d);
      return attention(view(0), view(1), view(2), { causal: true });
    });
    const want = attentionRef(f64(pick(0), shape), f64(pick(1), shape), f64(pick(2), shape), { causal: true });
    assertClose(await got.read(), want.out.data, { atol: 2e-5, rtol: 1e-4 }, 'strided attention');
    got.dispose();
  });

  it('copies a view whose offset is not a multiple of 4 for the vec4 kernels', async () => {
    const c: Case = { B: 1, H: 2, Nq: 9, d: 8 };
    const x = data(c);
    const padded = new Float32Array(x.q.length + 2);
    padded.set(x.q, 2);
    const got = scope(() => {
      const base = tensor(dev, padded, [padded.length]);
      const q = base.view(x.qs, [c.H * c.Nq * c.d, c.Nq * c.d, c.d, 1], 2);
      return attention(q, tensor(dev, x.k, x.ks), tensor(dev, x.v, x.ks));
    });
    const want = attentionRef(f64(x.q, x.qs), f64(x.k, x.ks), f64(x.v, x.ks));
    assertClose(await got.read(), want.out.data, { atol: 2e-5, rtol: 1e-4 }, 'offset view');
    got.dispose();
  });

  it('names the op and the shapes on mismatched inputs', () => {
    scope(() => {
      const q = tensor(dev, rng.normal(2 * 4 * 8), [1, 2, 4, 8]);
      const k = tensor(dev, rng.normal(2 * 5 * 4), [1, 2, 5, 4]);
      expect(() => attention(q, k, k)).toThrow(/attention: k and v must be \(B, H, Nk, d\).*q \[1, 2, 4, 8\], k \[1, 2, 5, 4\]/);
      expect(() => attention(q, q, q, { keyLength: 0 })).toThrow(/keyLength 0/);
      const odd = tensor(dev, rng.normal(2 * 4 * 5), [1, 2, 4, 5]);
      expect(() => attention(odd, odd, odd, { subgroups: true })).toThrow(/multiple of 4 up to 64 \(d = 5\)/);
    });
  });
});

async function gpuGrads(c: Case, x: ReturnType<typeof data>): Promise<Float32Array[]> {
  const leaves = scope(() => {
    const q = tensor(dev, x.q, x.qs, { requiresGrad: true });
    const k = tensor(dev, x.k, x.ks, { requiresGrad: true });
    const v = tensor(dev, x.v, x.ks, { requiresGrad: true });
    const out = attention(q, k, v, c.opts);
    backward(out, tensor(dev, x.w, x.qs));
    return [q, k, v];
  });
  const grads = [];
  for (const t of leaves) {
    grads.push((await (t.grad as Tensor).read()) as Float32Array);
    t.dispose();
  }
  return grads;
}

describe('attention backward (GPU vs float64 reference)', () => {
  const cases: Case[] = [
    { B: 1, H: 1, Nq: 1, d: 8 },
    { B: 2, H: 3, Nq: 5, d: 8 },
    { B: 1, H: 2, Nq: 17, d: 16, opts: { causal: true } },
    { B: 2, H: 1, Nq: 17, d: 16, opts: { keyLength: 9 } },
    { B: 2, H: 2, Nq: 20, d: 64, opts: { causal: true, keyLength: 14 } },
    { B: 1, H: 2, Nq: 6, Nk: 41, d: 5, opts: { scale: 0.4 } },
    { B: 1, H: 2, Nq: 6, Nk: 41, d: 8, opts: { scale: 0.4 } },
    { B: 1, H: 2, Nq: 97, d: 64 },
    // Several 128-key steps of the subgroup backward, a partial last one, keys cut mid-step.
    { B: 1, H: 1, Nq: 70, Nk: 300, d: 16, opts: { kernel: 'subgroup' } },
    { B: 2, H: 1, Nq: 150, d: 8, opts: { causal: true } },
    { B: 1, H: 2, Nq: 201, d: 8, opts: { keyLength: 140 } },
    { B: 1, H: 1, Nq: 785, d: 64 },
    // The lane kernels: with subgroups beyond what they take without (every compiled head dim);
    // without, at their limit. The subgroup kernels on what the lane kernels take by default.
    { B: 1, H: 1, Nq: 70, Nk: 300, d: 16, opts: { keyLength: 280 } },
    { B: 2, H: 1, Nq: 33, d: 32, opts: { causal: true, kernel: 'lanes' } },
    { B: 1, H: 2, Nq: 9, Nk: 21, d: 12, opts: { scale: 0.3, kernel: 'lanes' } },
    { B: 2, H: 2, Nq: 30, d: 64, opts: { keyLength: 27, kernel: 'lanes' } },
    { B: 2, H: 2, Nq: 17, d: 16, opts: { causal: true, kernel: 'lanes', subgroups: false } },
    { B: 1, H: 1, Nq: 256, d: 4, opts: { causal: true, keyLength: 200, kernel: 'lanes', subgroups: false } },
    { B: 2, H: 2, Nq: 20, d: 64, opts: { causal: true, keyLength: 14, kernel: 'subgroup' } },
    { B: 2, H: 1, Nq: 150, d: 8, opts: { causal: true, kernel: 'subgroup' } },
    { B: 1, H: 2, Nq: 201, d: 8, opts: { keyLength: 140, kernel: 'subgroup' } },
    // The portable kernels.
    { B: 1, H: 1, Nq: 17, d: 8, opts: { causal: true, keyLength: 12, subgroups: false } },
  ];
  for (const c of cases) {
    it(label(c), async () => {
      const x = data(c);
      const [dq, dk, dv] = await gpuGrads(c, x);
      const want = attentionBackwardRef(f64(x.q, x.qs), f64(x.k, x.ks), f64(x.v, x.ks), f64(x.w, x.qs), c.opts);
      const tol = { atol: 1e-4, rtol: 1e-3 };
      assertClose(dq!, want.dq.data, tol, 'dq');
      assertClose(dk!, want.dk.data, tol, 'dk');
      assertClose(dv!, want.dv.data, tol, 'dv');
    });
  }
});

describe('attentionKernel', () => {
  const pick = (B: number, H: number, N: number, d: number, opts: AttentionOptions = {}) =>
    scope(() => {
      const q = tensor(dev, new Float32Array(B * H * N * d), [B, H, N, d]);
      return attentionKernel(q, q, opts);
    });

  it('takes the lane kernels where they are the faster on a CPU adapter with 8-lane subgroups', (ctx) => {
    if (!isCpuAdapter(dev) || fixedSubgroupSize(dev) !== 8) ctx.skip();
    expect(pick(32, 4, 65, 16)).toBe('lanes');
    expect(pick(2, 4, 785, 16)).toBe('lanes');
    expect(pick(8, 2, 197, 32)).toBe('lanes');
    expect(pick(8, 4, 33, 64)).toBe('lanes');
    expect(pick(8, 12, 65, 64)).toBe('lanes');
    expect(pick(8, 3, 197, 64)).toBe('subgroup');
    expect(pick(1, 12, 785, 64)).toBe('subgroup');
    expect(pick(2, 2, 65, 16, { subgroups: false })).toBe('portable');
    expect(pick(1, 1, 300, 16, { kernel: 'lanes' })).toBe('lanes');
    expect(() => pick(1, 1, 300, 16, { kernel: 'lanes', subgroups: false })).toThrow(/at most 256 keys/);
  });
});

describe('attention backward into views of one projection gradient', () => {
  // q, k, v read from one (B, T, 3, H, d) projection and dq, dk, dv written back into one: every
  // family, the portable one through copies (it binds its outputs apart).
  const forms: AttentionOptions[] = [...ATTENTION_KERNELS.map((kernel) => ({ kernel })), { kernel: 'lanes', subgroups: false }];
  for (const opts of forms) {
    const kernel = opts.kernel!;
    it(JSON.stringify(opts), async () => {
      const [B, H, T, d] = [2, 2, 19, 8];
      const D = H * d;
      const qkv = tensor(dev, rng.normal(B * T * 3 * D), [B, T, 3 * D]);
      const g = tensor(dev, rng.normal(B * H * T * d), [B, H, T, d]);
      const strides = [T * 3 * D, d, 3 * D, 1];
      const part = (t: typeof qkv, i: number) => t.view([B, H, T, d], strides, t.offset + i * D);
      const [q, k, v] = [0, 1, 2].map((i) => part(qkv, i)) as [typeof qkv, typeof qkv, typeof qkv];
      const { out, lse } = launchAttention(q, k, v, opts);
      const apart = launchAttentionBackward(q, k, v, out, lse, g, opts);
      const dqkv = tensor(dev, new Float32Array(B * T * 3 * D).fill(7), [B, T, 3 * D]);
      const into = { dq: part(dqkv, 0), dk: part(dqkv, 1), dv: part(dqkv, 2) };
      expect(launchAttentionBackward(q, k, v, out, lse, g, opts, into)).toBe(into);
      for (const [name, a, b] of [['dq', apart.dq, into.dq], ['dk', apart.dk, into.dk], ['dv', apart.dv, into.dv]] as const) {
        assertClose(await b.read(), await a.read(), { atol: 0, rtol: 0 }, `${kernel} ${name}`);
      }
    });
  }
});

describe('clsAttentionScores', () => {
  const cases: Case[] = [
    { B: 1, H: 1, Nq: 2, d: 8 },
    { B: 3, H: 4, Nq: 17, d: 16 },
    { B: 2, H: 12, Nq: 197, d: 64 },
  ];
  for (const c of cases) {
    it(label(c), async () => {
      const x = data(c);
      const scores = scope(() => {
        const q = tensor(dev, x.q, x.qs);
        const k = tensor(dev, x.k, x.ks);
        const { lse } = attentionWithLse(q, k, tensor(dev, x.v, x.ks));
        return clsAttentionScores(q, k, lse);
      });
      expect(scores.shape).toEqual([c.B, c.Nq - 1]);
      assertClose(await scores.read(), clsAttentionScoresRef(f64(x.q, x.qs), f64(x.k, x.ks)).data, { atol: 1e-6, rtol: 1e-4 }, 'cls scores');
      scores.dispose();
    });
  }
});
