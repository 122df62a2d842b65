import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, add, backward, l2Normalize, layerNorm, mul, scope, sum, tensor, transpose } from '../index.js';
import { launchLayerNorm } from '../raw.js';
import {
  Rng,
  assertClose,
  dot,
  f64,
  l2NormalizeBackwardRef,
  l2NormalizeRef,
  layerNormBackwardRef,
  layerNormRef,
  numericGrad,
  testDevice,
  toF64,
} from '../testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(11);

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

describe('layerNorm reference', () => {
  it('backward matches finite differences of the forward', () => {
    const shape = [3, 5];
    const eps = 1e-5;
    const x = toF64(rng.normal(15));
    const w = toF64(rng.uniform(5, 0.5, 1.5));
    const b = toF64(rng.normal(5));
    const g = toF64(rng.normal(15));
    const want = layerNormBackwardRef(f64(g, shape), f64(x, shape), w, eps);
    const f = () => dot(g, layerNormRef(f64(x, shape), w, b, eps).y.data);
    assertClose(want.dx.data, numericGrad(f, x), { atol: 1e-7, rtol: 1e-6 }, 'dx');
    assertClose(want.dw, numericGrad(f, w), { atol: 1e-7, rtol: 1e-6 }, 'dw');
    assertClose(want.db, numericGrad(f, b), { atol: 1e-7, rtol: 1e-6 }, 'db');
  });
});

describe('layerNorm kernels', () => {
  // A mean far from 0 relative to the spread checks that the variance does not cancel.
  const cases: [rows: number, n: number, mean: number][] = [
    [1, 1, 30],
    [7, 1, 30],
    [1, 3, 30],
    [5, 65, 30],
    [3, 769, 30],
    [2, 3073, 30],
    [3001, 129, 30],
    [4, 768, 3000],
    // Widths a multiple of 4: the row-by-subgroup kernels on CPU adapters, several rows a workgroup.
    [9, 16, 30],
    [2081, 64, 30],
    // Beyond 16384 rows the weight and bias gradients take two passes (chunks, then their sum).
    [16500, 8, 30],
  ];
  for (const [rows, n, mu] of cases) {
    it(`forward and backward [${rows}, ${n}], mean ${mu}`, async () => {
      const eps = 1e-5;
      const xs = rng.normal(rows * n, 2).map((v) => v + mu);
      const ws = rng.uniform(n, 0.5, 1.5);
      const bs = rng.normal(n);
      const gs = rng.normal(rows * n);
      const x = tensor(dev, xs, [rows, n], { requiresGrad: true });
      const w = tensor(dev, ws, [n], { requiresGrad: true });
      const b = tensor(dev, bs, [n], { requiresGrad: true });
      const y = scope(() => {
        const y = layerNorm(x, w, b, eps);
        backward(sum(mul(y, tensor(dev, gs, [rows, n]))));
        return y;
      });
      const ref = layerNormRef(f64(xs, [rows, n]), toF64(ws), toF64(bs), eps);
      // The f32 mean is off by up to half an ulp of |mean|, which x̂ sees divided by the spread (2).
      const meanUlp = mu * 2 ** -23;
      assertClose(await y.read(), ref.y.data, { atol: 2e-5 + meanUlp, rtol: 1e-4 }, 'y');
      const dref = layerNormBackwardRef(f64(gs, [rows, n]), f64(xs, [rows, n]), toF64(ws), eps);
      // Width 1 has var = 0: rstd = 1/sqrt(eps) scales rounding in x̂ by ~300.
      const scaleDx = n === 1 ? 1e-2 : 2e-4;
      assertClose(await x.grad!.read(), dref.dx.data, { atol: scaleDx * maxAbs(dref.dx.data), rtol: 1e-3 }, 'dx');
      // dweight sums the rows' x̂ errors from the mean's rounding, weighted by g ~ N(0, 1).
      const dwAtol = 1e-5 * Math.sqrt(rows) * maxAbs(dref.dw) + 1e-5 + 3 * meanUlp * Math.sqrt(rows);
      assertClose(await w.grad!.read(), dref.dw, { atol: dwAtol, rtol: 1e-4 }, 'dweight');
      assertClose(await b.grad!.read(), dref.db, { atol: 1e-5 * Math.sqrt(rows) * maxAbs(dref.db) + 1e-5, rtol: 1e-4 }, 'dbias');
    });
  }

  it('a residual stream x + f(layerNorm(x)): dx accumulates into the gradient x already has, with no extra pass', async () => {
    for (const [rows, n] of [[37, 16], [5, 7]] as const) {
      const eps = 1e-5;
      const xs = rng.normal(rows * n);
      const hs = rng.normal(rows * n);
      const ws = rng.uniform(n, 0.5, 1.5);
      const gs = rng.normal(rows * n);
      const x = tensor(dev, xs, [rows, n], { requiresGrad: true });
      const w = tensor(dev, ws, [n]);
      const b = tensor(dev, new Float32Array(n), [n]);
      const kernels: string[] = [];
      const dispatch = dev.dispatch.bind(dev);
      scope(() => {
        // s feeds LayerNorm and the stream: the stream's gradient reaches s first (the add was
        // recorded last), then LayerNorm adds its dx into it in the same kernel.
        const s = mul(x, tensor(dev, [1], [1]));
        const y = add(s, mul(layerNorm(s, w, b, eps), tensor(dev, hs, [rows, n])));
        dev.dispatch = (spec, ...rest) => (kernels.push(spec.name), dispatch(spec, ...rest));
        backward(sum(mul(y, tensor(dev, gs, [rows, n]))));
        dev.dispatch = dispatch;
      });
      expect(kernels.filter((k) => k.startsWith('layer_norm_dx'))).toHaveLength(1);
      expect(kernels).not.toContain('accumulate');
      // d/dx: g (the stream) + LayerNorm's dx of g ⊙ h.
      const gh = gs.map((g, i) => g * hs[i]!);
      const dref = layerNormBackwardRef(f64(gh, [rows, n]), f64(xs, [rows, n]), toF64(ws), eps);
      assertClose(await x.grad!.read(), dref.dx.data.map((v, i) => v + gs[i]!), { atol: 1e-4, rtol: 1e-3 }, `dx [${rows}, ${n}]`);
    }
  });

  it('statistics per row, and strided input', async () => {
    const xs = rng.normal(6 * 4);
    const x = transpose(tensor(dev, xs, [6, 4]));
    const { y, mean, rstd } = launchLayerNorm(x, tensor(dev, [1, 1, 1, 1, 1, 1]), tensor(dev, [0, 0, 0, 0, 0, 0]), 1e-5);
    const xt: number[] = [];
    for (let j = 0; j < 4; j++) for (let i = 0; i < 6; i++) xt.push(xs[i * 4 + j]!);
    const ref = layerNormRef(f64(xt, [4, 6]), new Float64Array(6).fill(1), new Float64Array(6), 1e-5);
    assertClose(await y.read(), ref.y.data, { atol: 1e-5, rtol: 1e-4 }, 'y');
    assertClose(await mean.read(), ref.mean, { atol: 1e-6, rtol: 1e-5 }, 'mean');
    assertClose(await rstd.read(), ref.rstd, { atol: 1e-6, rtol: 1e-5 }, 'rstd');
  });

  it('normalises the last axis of [B, N, D], with gradients for the parameters only', async () => {
    const shape = [2, 3, 5];
    const xs = rng.normal(30);
    const gs = rng.normal(30);
    const ws = rng.uniform(5, 0.5, 1.5);
    const w = tensor(dev, ws, [5], { requiresGrad: true });
    const b = tensor(dev, new Float32Array(5), [5], { requiresGrad: true });
    const y = scope(() => {
      const y = layerNorm(tensor(dev, xs, shape), w, b);
      backward(sum(mul(y, tensor(dev, gs, shape))));
      return y;
    });
    expect(y.shape).toEqual(shape);
    assertClose(await y.read(), layerNormRef(f64(xs, shape), toF64(ws), new Float64Array(5), 1e-5).y.data, { atol: 2e-5, rtol: 1e-4 }, 'y');
    const dref = layerNormBackwardRef(f64(gs, shape), f64(xs, shape), toF64(ws), 1e-5);
    assertClose(await w.grad!.read(), dref.dw, { atol: 1e-5, rtol: 1e-4 }, 'dweight');
    assertClose(await b.grad!.read(), dref.db, { atol: 1e-5, rtol: 1e-4 }, 'dbias');
  });

  it('names the op and shapes on a weight of the wrong size', () => {
    expect(() => layerNorm(tensor(dev, [1, 2, 3], [1, 3]), tensor(dev, [1, 1], [2]), tensor(dev, [0, 0, 0], [3]))).toThrow(
      /layerNorm: weight must be f32 \[3\] for x \[1, 3\], got f32 \[2\]/,
    );
  });
});

describe('l2Normalize reference', () => {
  it('backward matches finite differences of the forward, unclamped and clamped', () => {
    const g = toF64(rng.normal(8));
    // Row 0 has norm ~1; row 1 has norm below eps, where y = x/eps.
    const x = toF64([...rng.normal(4), 1e-4, -2e-4, 3e-4, 1e-4]);
    const want = l2NormalizeBackwardRef(f64(g, [2, 4]), f64(x, [2, 4]), 1e-2);
    assertClose(want.data, numericGrad((v) => dot(g, l2NormalizeRef(f64(v, [2, 4]), 1e-2).data), x, 1e-7), { atol: 1e-7, rtol: 1e-6 }, 'dx');
  });
});

describe('l2Normalize kernels', () => {
  const cases: [rows: number, n: number][] = [
    [1, 1],
    [6, 1],
    [1, 3],
    [5, 65],
    [3, 769],
    [2, 3073],
    [3001, 129],
  ];
  for (const [rows, n] of cases) {
    it(`forward and backward [${rows}, ${n}]`, async () => {
      const eps = 1e-6;
      const xs = rng.normal(rows * n, 3);
      // A zero row: the norm clamps to eps and the gradient is g/eps.
      if (rows > 1) xs.fill(0, 0, n);
      const gs = rng.normal(rows * n);
      const x = tensor(dev, xs, [rows, n], { requiresGrad: true });
      const y = scope(() => {
        const y = l2Normalize(x, eps);
        backward(sum(mul(y, tensor(dev, gs, [rows, n]))));
        return y;
      });
      assertClose(await y.read(), l2NormalizeRef(f64(xs, [rows, n]), eps).data, { atol: 1e-6, rtol: 1e-5 }, 'y');
      const dref = l2NormalizeBackwardRef(f64(gs, [rows, n]), f64(xs, [rows, n]), eps).data;
      assertClose(await x.grad!.read(), dref, { atol: 1e-6, rtol: 1e-4 }, 'dx');
    });
  }
});
