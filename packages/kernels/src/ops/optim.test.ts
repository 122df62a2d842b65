import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, tensor } from '../index.js';
import { Rng, adamwRefStep, assertClose, clipRef, freshSgdBuffer, globalNormRef, sgdRefStep, testDevice, toF64 } from '../testing/index.js';
import { launchAdamW, launchClipScale, launchGlobalNorm, launchSgd } from './optim.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(3);
const sizes = [1, 7, 1024, 1000003];
const tol = { atol: 1e-6, rtol: 1e-5 };

describe('fused AdamW update', () => {
  for (const n of sizes) {
    it(`${n} elements, 3 steps, decoupled decay`, async () => {
      const h = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
      const p0 = rng.uniform(n);
      const param = tensor(dev, p0);
      const m = tensor(dev, new Float32Array(n));
      const v = tensor(dev, new Float32Array(n));
      const ref = toF64(p0);
      const s = { m: new Float64Array(n), v: new Float64Array(n), step: 0 };
      for (let t = 1; t <= 3; t++) {
        const g = rng.uniform(n);
        launchAdamW(param, tensor(dev, g), m, v, { ...h, step: t });
        adamwRefStep(ref, g, s, h);
      }
      assertClose(await param.read(), ref, tol, 'param');
      assertClose(await m.read(), s.m, tol, 'm');
      assertClose(await v.read(), s.v, tol, 'v');
    });
  }

  it('updates a parameter that is a view at an offset, with a strided gradient', async () => {
    const big = tensor(dev, rng.uniform(20));
    const param = big.view([3, 3], [3, 1], 5);
    const gAll = rng.uniform(9);
    const g = tensor(dev, gAll, [3, 3]).view([3, 3], [1, 3], 0); // transposed
    const before = toF64((await param.read()) as Float32Array);
    const m = tensor(dev, new Float32Array(9));
    const v = tensor(dev, new Float32Array(9));
    const h = { lr: 0.1, beta1: 0.8, beta2: 0.9, eps: 1e-6, weightDecay: 0 };
    launchAdamW(param, g, m, v, { ...h, step: 1 });
    const gT = [0, 1, 2].flatMap((i) => [0, 1, 2].map((j) => gAll[j * 3 + i]!));
    adamwRefStep(before, gT, { m: new Float64Array(9), v: new Float64Array(9), step: 0 }, h);
    assertClose(await param.read(), before, tol, 'param view');
  });

  it('names the parameter and shapes on a mismatch', () => {
    const p = tensor(dev, [1, 2, 3], [3], { name: 'w' });
    const z = tensor(dev, [0, 0, 0]);
    expect(() => launchAdamW(p, tensor(dev, [1, 2]), z, z, { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1e-8, weightDecay: 0, step: 1 })).toThrow(/adamw: gradient f32\[2\] for parameter Tensor\(f32\[3\] 'w'\)/);
  });
});

describe('fused SGD update', () => {
  const variants = [
    { momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 },
    { momentum: 0.9, dampening: 0, nesterov: false, weightDecay: 1e-3 },
    { momentum: 0.9, dampening: 0, nesterov: true, weightDecay: 1e-3 },
    { momentum: 0.5, dampening: 0.3, nesterov: false, weightDecay: 0 },
  ];
  for (const n of sizes) {
    for (const hv of variants) {
      it(`${n} elements, 3 steps, ${JSON.stringify(hv)}`, async () => {
        const h = { lr: 0.05, ...hv };
        const p0 = rng.uniform(n);
        const param = tensor(dev, p0);
        const buf = h.momentum ? tensor(dev, new Float32Array(n)) : null;
        const ref = toF64(p0);
        const s = { buf: h.momentum ? freshSgdBuffer(n) : null };
        for (let t = 0; t < 3; t++) {
          const g = rng.uniform(n);
          launchSgd(param, tensor(dev, g), buf, { ...h, first: t === 0 });
          sgdRefStep(ref, g, s, h);
        }
        assertClose(await param.read(), ref, tol, 'param');
        if (buf) assertClose(await buf.read(), s.buf!, tol, 'momentum buffer');
      });
    }
  }
});

describe('global norm and clipping', () => {
  it('sums the squares of many tensors of odd sizes', async () => {
    const xs = [1, 7, 5000, 1000003, 4096].map((n) => rng.uniform(n));
    const norm = launchGlobalNorm(
      dev,
      xs.map((x) => tensor(dev, x)),
    );
    expect(norm.shape).toEqual([]);
    assertClose([await norm.item()], [globalNormRef(xs)], { atol: 0, rtol: 2e-6 }, 'norm');
  });

  for (const maxNorm of [0.5, 1e3]) {
    it(`clips to maxNorm ${maxNorm} without a read-back`, async () => {
      const xs = [3, 1000003, 17].map((n) => rng.uniform(n, -1e-3, 1e-3));
      const ts = xs.map((x) => tensor(dev, x));
      await dev.sync();
      const submits = dev.counts.submits;
      const norm = launchGlobalNorm(dev, ts);
      launchClipScale(ts, norm, maxNorm);
      expect(dev.counts.submits).toBe(submits);
      const want = clipRef(xs, maxNorm);
      for (let k = 0; k < xs.length; k++) assertClose(await ts[k]!.read(), want[k]!, { atol: 1e-10, rtol: 2e-6 }, `tensor ${k}`);
    });
  }

  it('an empty list has norm 0', async () => {
    expect(await launchGlobalNorm(dev, []).item()).toBe(0);
  });
});
