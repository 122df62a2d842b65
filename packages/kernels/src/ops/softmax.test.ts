import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, backward, logSoftmax, mul, scope, softmax, sum, tensor, transpose } from '../index.js';
import {
  Rng,
  assertClose,
  dot,
  f64,
  logSoftmaxBackwardRef,
  logSoftmaxRef,
  numericGrad,
  softmaxBackwardRef,
  softmaxRef,
  testDevice,
  toF64,
} from '../testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(5);

const ops = {
  softmax: { gpu: softmax, ref: softmaxRef, back: softmaxBackwardRef },
  logSoftmax: { gpu: logSoftmax, ref: logSoftmaxRef, back: logSoftmaxBackwardRef },
};

describe('softmax references', () => {
  for (const [name, op] of Object.entries(ops)) {
    it(`${name} backward matches finite differences of the forward`, () => {
      const x = toF64(rng.normal(3 * 7, 2));
      const g = toF64(rng.normal(3 * 7));
      const want = op.back(f64(g, [3, 7]), f64(x, [3, 7]));
      assertClose(want.data, numericGrad((v) => dot(g, op.ref(f64(v, [3, 7])).data), x), { atol: 1e-8, rtol: 1e-6 }, 'dx');
    });
  }
});

describe('softmax kernels', () => {
  const cases: [rows: number, n: number, std: number, offset: number][] = [
    [1, 1, 1, 0],
    [9, 1, 1, 0],
    [1, 3, 1, 0],
    [4, 65, 2, 0],
    [3, 769, 2, 0],
    [2, 3073, 1, 0],
    [2000, 97, 1, 0],
    // Large-magnitude logits: exp without the max shift overflows f32.
    [5, 785, 30, 2000],
    [5, 785, 30, -2000],
  ];
  for (const [name, op] of Object.entries(ops)) {
    for (const [rows, n, std, offset] of cases) {
      it(`${name} [${rows}, ${n}] ~ ${offset} ± ${std}`, async () => {
        const xs = rng.normal(rows * n, std).map((v) => v + offset);
        const gs = rng.normal(rows * n);
        const x = tensor(dev, xs, [rows, n], { requiresGrad: true });
        const y = scope(() => {
          const y = op.gpu(x);
          backward(sum(mul(y, tensor(dev, gs, [rows, n]))));
          return y;
        });
        const ref = op.ref(f64(xs, [rows, n])).data;
        assertClose(await y.read(), ref, { atol: 2e-6, rtol: 1e-5 }, 'y');
        const dref = op.back(f64(gs, [rows, n]), f64(xs, [rows, n])).data;
        assertClose(await x.grad!.read(), dref, { atol: 2e-6 * Math.sqrt(n), rtol: 1e-4 }, 'dx');
      });
    }
  }

  it('of a strided view', async () => {
    const xs = rng.normal(5 * 3);
    const y = softmax(transpose(tensor(dev, xs, [5, 3])));
    const xt: number[] = [];
    for (let j = 0; j < 3; j++) for (let i = 0; i < 5; i++) xt.push(xs[i * 3 + j]!);
    assertClose(await y.read(), softmaxRef(f64(xt, [3, 5])).data, { atol: 1e-6, rtol: 1e-5 }, 'y');
  });

  it('names the op and shape on an empty last axis', () => {
    expect(() => softmax(tensor(dev, [], [2, 0]))).toThrow(/softmax: needs a non-empty last axis, got \[2, 0\]/);
  });
});
