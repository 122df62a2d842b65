import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, backward, tensor } from '../index.js';
import { embedding, gatherRows } from '../nn/embedding.js';
import { Rng, assertClose, dot, f64, gatherRowsRef, numericGrad, scatterAddRowsRef, testDevice, toF64 } from '../testing/index.js';
import { launchGatherRows, launchScatterAddRows } from './gather.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(11);

// [B, N, D, K, ids drawn from [0, hi)]
const cases: [number, number, number, number, number][] = [
  [1, 1, 1, 1, 1],
  [1, 1, 7, 9, 1], // one row, every id repeated
  [2, 7, 5, 3, 7],
  [3, 13, 33, 13, 13], // K = N
  [4, 5, 3, 40, 5], // more positions than rows
  [2, 300, 17, 700, 50], // sort across several blocks, heavy repetition
  [1, 49408, 16, 4001, 49408], // CLIP vocabulary, ~20·200 ids
  [1, 1000, 512, 4001, 1000], // CLIP width
];

describe('gatherRows / scatterAddRows', () => {
  for (const [b, n, d, k, hi] of cases) {
    it(`x [${b}, ${n}, ${d}], idx [${b}, ${k}]`, async () => {
      const x = rng.uniform(b * n * d);
      const idx = rng.ints(b * k, hi);
      const g = rng.uniform(b * k * d);
      const tidx = tensor(dev, idx, [b, k]);
      const out = launchGatherRows(tensor(dev, x, [b, n, d]), tidx);
      expect(out.shape).toEqual([b, k, d]);
      assertClose(await out.read(), gatherRowsRef(f64(x, [b, n, d]), idx, k).data, { atol: 0, rtol: 0 }, 'gather');
      const dx = launchScatterAddRows(tensor(dev, g, [b, k, d]), tidx, n);
      expect(dx.shape).toEqual([b, n, d]);
      assertClose(await dx.read(), scatterAddRowsRef(f64(g, [b, k, d]), idx, n).data, { atol: 1e-5, rtol: 1e-5 }, 'scatter-add');
    });
  }

  it('scatter-add is bitwise identical across runs', async () => {
    const [b, n, d, k] = [2, 3, 33, 3000];
    const idx = rng.ints(b * k, n);
    const g = tensor(dev, rng.normal(b * k * d), [b, k, d]);
    const tidx = tensor(dev, idx, [b, k]);
    const first = await launchScatterAddRows(g, tidx, n).read();
    for (let r = 0; r < 3; r++) expect(await launchScatterAddRows(g, tidx, n).read()).toEqual(first);
  });

  it('out-of-range indices gather zeros and receive no gradient', async () => {
    const x = rng.uniform(2 * 4 * 3);
    const idx = Int32Array.from([0, -1, 4, 3, 1, 2, 100, 1]);
    const g = rng.uniform(2 * 4 * 3);
    const tidx = tensor(dev, idx, [2, 4]);
    assertClose(await launchGatherRows(tensor(dev, x, [2, 4, 3]), tidx).read(), gatherRowsRef(f64(x, [2, 4, 3]), idx, 4).data, { atol: 0, rtol: 0 }, 'gather');
    assertClose(await launchScatterAddRows(tensor(dev, g, [2, 4, 3]), tidx, 4).read(), scatterAddRowsRef(f64(g, [2, 4, 3]), idx, 4).data, {}, 'scatter');
  });

  it('reference backward matches finite differences', () => {
    const [b, n, d, k] = [2, 5, 3, 7];
    const idx = rng.ints(b * k, n);
    const w = toF64(rng.uniform(b * k * d));
    const x = toF64(rng.uniform(b * n * d));
    const fd = numericGrad((v) => dot(w, gatherRowsRef({ data: v, shape: [b, n, d] }, idx, k).data), x);
    assertClose(scatterAddRowsRef({ data: w, shape: [b, k, d] }, idx, n).data, fd, { atol: 1e-7, rtol: 1e-7 }, 'fd');
  });

  it('gatherRows backward on the GPU matches the reference', async () => {
    const [b, n, d, k] = [3, 785, 24, 12];
    const x = rng.uniform(b * n * d);
    const idx = rng.ints(b * k, n);
    const g = rng.uniform(b * k * d);
    const tx = tensor(dev, x, [b, n, d], { requiresGrad: true });
    backward(gatherRows(tx, tensor(dev, idx, [b, k])), tensor(dev, g, [b, k, d]));
    assertClose(await tx.grad!.read(), scatterAddRowsRef(f64(g, [b, k, d]), idx, n).data, { atol: 1e-6, rtol: 1e-6 }, 'dx');
  });

  it('names the op and shapes on a mismatch', () => {
    expect(() => launchGatherRows(tensor(dev, [1, 2], [1, 2, 1]), tensor(dev, Int32Array.from([0, 0]), [2, 1]))).toThrow(/gatherRows: .*x f32\[1, 2, 1\], idx i32\[2, 1\]/);
  });
});

describe('embedding', () => {
  it('looks up ids of any shape and scatter-adds repeated ids into the table gradient', async () => {
    const [v, d] = [11, 9];
    const shape = [2, 3, 4];
    const table = rng.uniform(v * d);
    const ids = rng.ints(24, 5); // ids < 5: repeats, and rows 5..10 get no gradient
    const g = rng.uniform(24 * d);
    const tt = tensor(dev, table, [v, d], { requiresGrad: true });
    const out = embedding(tt, tensor(dev, ids, shape));
    expect(out.shape).toEqual([...shape, d]);
    assertClose(await out.read(), gatherRowsRef(f64(table, [1, v, d]), ids, 24).data, { atol: 0, rtol: 0 }, 'lookup');
    backward(out, tensor(dev, g, [...shape, d]));
    assertClose(await tt.grad!.read(), scatterAddRowsRef(f64(g, [1, 24, d]), ids, v).data, { atol: 1e-6, rtol: 1e-6 }, 'dtable');
  });

  it('V = 1', async () => {
    const tt = tensor(dev, [0.5, -2], [1, 2], { requiresGrad: true });
    const out = embedding(tt, tensor(dev, Int32Array.from([0, 0, 0]), [3]));
    assertClose(await out.read(), [0.5, -2, 0.5, -2, 0.5, -2], { atol: 0, rtol: 0 }, 'lookup');
    backward(out, tensor(dev, [1, 2, 3, 4, 5, 6], [3, 2]));
    assertClose(await tt.grad!.read(), [9, 12], { atol: 0, rtol: 0 }, 'dtable');
  });

  it('rejects float ids', () => {
    expect(() => embedding(tensor(dev, [1, 2], [1, 2]), tensor(dev, [0], [1]))).toThrow(/embedding: .*ids f32\[1\]/);
  });
});
