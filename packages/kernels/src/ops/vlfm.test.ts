import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, type Tensor, backward, scope, slice, tensor } from '../index.js';
import { vlfmAttention } from '../nn/vlfm.js';
import { Rng, assertClose, dot, f64, numericGrad, testDevice, vlfmBackwardRef, vlfmRef } from '../testing/index.js';
import { launchVlfm } from './vlfm.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(3);

function data(B: number, C: number, D: number) {
  return {
    q0: rng.normal(B * D),
    k0: rng.normal(B * D),
    v0: rng.normal(B * D),
    kt: rng.normal(C * D),
    vt: rng.normal(C * D),
    w: rng.normal(B * D),
  };
}

type Data = ReturnType<typeof data>;

function refs(x: Data, B: number, C: number, D: number) {
  return [f64(x.q0, [B, D]), f64(x.k0, [B, D]), f64(x.v0, [B, D]), f64(x.kt, [C, D]), f64(x.vt, [C, D])] as const;
}

describe('vlfm float64 reference backward', () => {
  for (const [B, C, D, scale] of [
    [2, 3, 4, undefined],
    [1, 1, 3, 0.8],
  ] as const) {
    it(`matches finite differences: B${B} C${C} D${D}`, () => {
      const x = data(B, C, D);
      const inputs = refs(x, B, C, D);
      const w = f64(x.w, [B, D]);
      const g = vlfmBackwardRef(...inputs, w, scale);
      const loss = () => dot(w.data, vlfmRef(...inputs, scale).out.data);
      const names = ['dq0', 'dk0', 'dv0', 'dkt', 'dvt'] as const;
      inputs.forEach((t, i) => assertClose(g[names[i]!].data, numericGrad(loss, t.data), { atol: 1e-7, rtol: 1e-6 }, names[i]));
    });
  }
});

describe('vlfm forward', () => {
  const cases: [number, number, number][] = [
    [1, 1, 8],
    [3, 3, 8],
    [5, 120, 33],
    [4, 101, 512],
    [2, 200, 512],
    [16, 555, 512],
  ];
  for (const [B, C, D] of cases) {
    it(`B${B} C${C} D${D}`, async () => {
      const x = data(B, C, D);
      const r = scope(() =>
        launchVlfm(tensor(dev, x.q0, [B, D]), tensor(dev, x.k0, [B, D]), tensor(dev, x.v0, [B, D]), tensor(dev, x.kt, [C, D]), tensor(dev, x.vt, [C, D])),
      );
      const want = vlfmRef(...refs(x, B, C, D));
      assertClose(await r.out.read(), want.out.data, { atol: 1e-5, rtol: 1e-4 }, 'out');
      assertClose(await r.probs.read(), want.probs.data, { atol: 1e-6, rtol: 1e-4 }, 'probs');
      r.out.dispose();
      r.probs.dispose();
    });
  }

  it('reads q0, k0, v0 as column views of one (B, 3D) projection', async () => {
    const [B, C, D] = [3, 5, 8];
    const qkv = rng.normal(B * 3 * D);
    const x = data(B, C, D);
    const col = (k: number) => Float32Array.from({ length: B * D }, (_, i) => qkv[Math.floor(i / D) * 3 * D + k * D + (i % D)]!);
    const out = scope(() => {
      const t = tensor(dev, qkv, [B, 3 * D]);
      return vlfmAttention(slice(t, 1, 0, D), slice(t, 1, D, 2 * D), slice(t, 1, 2 * D, 3 * D), tensor(dev, x.kt, [C, D]), tensor(dev, x.vt, [C, D]));
    });
    const want = vlfmRef(f64(col(0), [B, D]), f64(col(1), [B, D]), f64(col(2), [B, D]), f64(x.kt, [C, D]), f64(x.vt, [C, D]));
    assertClose(await out.read(), want.out.data, { atol: 1e-5, rtol: 1e-4 }, 'strided vlfm');
    out.dispose();
  });

  it('names the op and the shapes on mismatched inputs', () => {
    scope(() => {
      const q = tensor(dev, rng.normal(2 * 8), [2, 8]);
      const kt = tensor(dev, rng.normal(3 * 7), [3, 7]);
      expect(() => vlfmAttention(q, q, q, kt, kt)).toThrow(/vlfm: kt must be f32 \(3, 8\); got f32 \[3, 7\]/);
    });
  });
});

describe('vlfm backward (GPU vs float64 reference)', () => {
  const cases: [number, number, number][] = [
    [1, 1, 8],
    [3, 3, 8],
    [2, 7, 33],
    [16, 101, 64],
    [4, 120, 512],
  ];
  for (const [B, C, D] of cases) {
    it(`B${B} C${C} D${D}`, async () => {
      const x = data(B, C, D);
      const leaves = scope(() => {
        const ts = [
          tensor(dev, x.q0, [B, D], { requiresGrad: true }),
          tensor(dev, x.k0, [B, D], { requiresGrad: true }),
          tensor(dev, x.v0, [B, D], { requiresGrad: true }),
          tensor(dev, x.kt, [C, D], { requiresGrad: true }),
          tensor(dev, x.vt, [C, D], { requiresGrad: true }),
        ] as const;
        backward(vlfmAttention(...ts), tensor(dev, x.w, [B, D]));
        return [...ts];
      });
      const want = vlfmBackwardRef(...refs(x, B, C, D), f64(x.w, [B, D]));
      const names = ['dq0', 'dk0', 'dv0', 'dkt', 'dvt'] as const;
      for (let i = 0; i < 5; i++) {
        assertClose(await (leaves[i]!.grad as Tensor).read(), want[names[i]!].data, { atol: 1e-5, rtol: 1e-3 }, names[i]);
        leaves[i]!.dispose();
      }
    });
  }

  it('skips the text pass when the text side is frozen', async () => {
    const [B, C, D] = [2, 4, 8];
    const x = data(B, C, D);
    const q0 = tensor(dev, x.q0, [B, D], { requiresGrad: true });
    const kt = tensor(dev, x.kt, [C, D]);
    scope(() => backward(vlfmAttention(q0, tensor(dev, x.k0, [B, D]), tensor(dev, x.v0, [B, D]), kt, tensor(dev, x.vt, [C, D])), tensor(dev, x.w, [B, D])));
    const want = vlfmBackwardRef(...refs(x, B, C, D), f64(x.w, [B, D]));
    assertClose(await (q0.grad as Tensor).read(), want.dq0.data, { atol: 1e-5, rtol: 1e-3 }, 'dq0');
    expect(kt.grad).toBeNull();
    q0.dispose();
    kt.dispose();
  });
});
