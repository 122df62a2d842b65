import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, backward, tensor } from '../index.js';
import { im2col, patchEmbed } from '../nn/patch.js';
import { Rng, assertClose, col2imRef, dot, f64, im2colRef, numericGrad, patchConvBackwardRef, patchConvRef, testDevice, toF64 } from '../testing/index.js';
import { launchCol2im, launchIm2col } from './patch.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(5);

// [B, C, H, W, P]
const cases: [number, number, number, number, number][] = [
  [1, 1, 1, 1, 1],
  [2, 3, 7, 5, 2], // H, W not multiples of P: the borders are cut off
  [1, 3, 32, 32, 16],
  [3, 2, 30, 45, 7],
  [2, 2, 20, 36, 8], // vec4 path with cut-off borders
  [4, 3, 448, 448, 16], // FGVC input
];

describe('im2col / col2im', () => {
  for (const [b, c, h, w, p] of cases) {
    it(`images [${b}, ${c}, ${h}, ${w}], patch ${p}`, async () => {
      const img = rng.uniform(b * c * h * w);
      const out = launchIm2col(tensor(dev, img, [b, c, h, w]), p);
      const want = im2colRef(f64(img, [b, c, h, w]), p);
      expect(out.shape).toEqual(want.shape);
      assertClose(await out.read(), want.data, { atol: 0, rtol: 0 }, 'im2col');
      const g = rng.uniform(want.data.length);
      const back = launchCol2im(tensor(dev, g, want.shape), [b, c, h, w], p);
      assertClose(await back.read(), col2imRef(f64(g, want.shape), [b, c, h, w], p).data, { atol: 0, rtol: 0 }, 'col2im');
    });
  }

  it('reference backward matches finite differences', () => {
    const shape = [2, 2, 5, 7];
    const img = toF64(rng.uniform(140));
    const n = im2colRef({ data: img, shape }, 2).data.length;
    const w = toF64(rng.uniform(n));
    const fd = numericGrad((x) => dot(w, im2colRef({ data: x, shape }, 2).data), img);
    assertClose(col2imRef({ data: w, shape: im2colRef({ data: img, shape }, 2).shape }, shape, 2).data, fd, { atol: 1e-8, rtol: 1e-8 }, 'fd');
  });

  it('im2col backward on the GPU matches the reference', async () => {
    const shape = [2, 3, 9, 10];
    const img = rng.uniform(540);
    const t = tensor(dev, img, shape, { requiresGrad: true });
    const out = im2col(t, 3);
    const g = rng.uniform(out.size);
    backward(out, tensor(dev, g, out.shape));
    assertClose(await t.grad!.read(), col2imRef(f64(g, [...out.shape]), shape, 3).data, { atol: 0, rtol: 0 }, 'dimages');
  });

  it('names the op and shapes on bad input', () => {
    expect(() => launchIm2col(tensor(dev, [1, 2, 3, 4], [1, 1, 2, 2]), 3)).toThrow(/im2col: .*\[1, 1, 2, 2\] with patch 3/);
    expect(() => launchCol2im(tensor(dev, [1, 2], [1, 1, 2]), [1, 1, 2, 2], 1)).toThrow(/col2im: expected f32 patches \[1, 4, 1\]/);
  });
});

describe('patch convolution reference', () => {
  it('is im2col times the weight flattened in (c, ky, kx) order', () => {
    const [b, c, h, w, p, d] = [2, 3, 8, 12, 4, 5];
    const img = f64(rng.uniform(b * c * h * w), [b, c, h, w]);
    const weight = f64(rng.uniform(d * c * p * p), [d, c, p, p]);
    const bias = f64(rng.uniform(d), [d]);
    const cols = im2colRef(img, p);
    const k = c * p * p;
    const want = new Float64Array(cols.shape[0]! * cols.shape[1]! * d);
    for (let r = 0; r < cols.shape[0]! * cols.shape[1]!; r++) {
      for (let o = 0; o < d; o++) want[r * d + o] = bias.data[o]! + dot(cols.data.subarray(r * k, (r + 1) * k), weight.data.subarray(o * k, (o + 1) * k));
    }
    assertClose(patchConvRef(img, weight, bias).data, want, { atol: 1e-12, rtol: 1e-12 }, 'conv');
  });

  it('backward matches finite differences', () => {
    const [b, c, h, w, p, d] = [1, 2, 5, 6, 2, 3];
    const img = toF64(rng.uniform(b * c * h * w));
    const weight = toF64(rng.uniform(d * c * p * p));
    const bias = toF64(rng.uniform(d));
    const is = [b, c, h, w];
    const ws = [d, c, p, p];
    const y = patchConvRef({ data: img, shape: is }, { data: weight, shape: ws }, { data: bias, shape: [d] });
    const dy = toF64(rng.uniform(y.data.length));
    const got = patchConvBackwardRef({ data: img, shape: is }, { data: weight, shape: ws }, { data: dy, shape: y.shape });
    const loss = (x: Float64Array, wt: Float64Array, bs: Float64Array) => dot(dy, patchConvRef({ data: x, shape: is }, { data: wt, shape: ws }, { data: bs, shape: [d] }).data);
    const tol = { atol: 1e-7, rtol: 1e-7 };
    assertClose(got.dimg.data, numericGrad((x) => loss(x, weight, bias), img), tol, 'dimg');
    assertClose(got.dweight.data, numericGrad((x) => loss(img, x, bias), weight), tol, 'dweight');
    assertClose(got.dbias.data, numericGrad((x) => loss(img, weight, x), bias), tol, 'dbias');
  });
});

describe('patchEmbed', () => {
  // [B, C, H, W, P, D]
  const embedCases: [number, number, number, number, number, number][] = [
    [1, 1, 1, 1, 1, 1],
    [2, 3, 32, 32, 16, 24],
    [1, 3, 30, 45, 7, 5],
  ];
  for (const [b, c, h, w, p, d] of embedCases) {
    it(`images [${b}, ${c}, ${h}, ${w}], weight [${d}, ${c}, ${p}, ${p}]: forward and backward`, async () => {
      const img = rng.uniform(b * c * h * w);
      const wt = rng.uniform(d * c * p * p, -0.2, 0.2);
      const bias = rng.uniform(d);
      const ti = tensor(dev, img, [b, c, h, w], { requiresGrad: true });
      const tw = tensor(dev, wt, [d, c, p, p], { requiresGrad: true });
      const tb = tensor(dev, bias, [d], { requiresGrad: true });
      const out = patchEmbed(ti, tw, tb, p);
      const want = patchConvRef(f64(img, [b, c, h, w]), f64(wt, [d, c, p, p]), f64(bias, [d]));
      expect(out.shape).toEqual(want.shape);
      assertClose(await out.read(), want.data, { atol: 1e-5, rtol: 1e-4 }, 'y');
      const dy = rng.uniform(want.data.length);
      backward(out, tensor(dev, dy, want.shape));
      const grads = patchConvBackwardRef(f64(img, [b, c, h, w]), f64(wt, [d, c, p, p]), f64(dy, want.shape));
      assertClose(await ti.grad!.read(), grads.dimg.data, { atol: 1e-5, rtol: 1e-4 }, 'dimages');
      assertClose(await tw.grad!.read(), grads.dweight.data, { atol: 1e-4, rtol: 1e-4 }, 'dweight');
      assertClose(await tb.grad!.read(), grads.dbias.data, { atol: 1e-4, rtol: 1e-4 }, 'dbias');
    });
  }

  it('names the shapes when the weight does not fit', () => {
    expect(() => patchEmbed(tensor(dev, new Float32Array(16), [1, 1, 4, 4]), tensor(dev, new Float32Array(8), [2, 1, 2, 2]), undefined, 3)).toThrow(/patchEmbed: images \[1, 1, 4, 4\], weight \[2, 1, 2, 2\], bias none do not fit patch 3/);
  });
});
