import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, backward, crossEntropy, scale, scope, tensor } from '../index.js';
import { Rng, assertClose, crossEntropyBackwardRef, crossEntropyRef, f64, numericGrad, testDevice, toF64 } from '../testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(23);

describe('crossEntropy reference', () => {
  for (const eps of [0, 0.1]) {
    it(`backward matches finite differences (smoothing ${eps})`, () => {
      const x = toF64(rng.normal(4 * 6, 2));
      const labels = [0, 5, 2, 2];
      const want = crossEntropyBackwardRef(f64(x, [4, 6]), labels, eps);
      assertClose(want.data, numericGrad((v) => crossEntropyRef(f64(v, [4, 6]), labels, eps), x), { atol: 1e-8, rtol: 1e-6 }, 'dlogits');
    });
  }
});

describe('crossEntropy kernels', () => {
  const cases: [b: number, c: number, std: number, offset: number][] = [
    [1, 1, 1, 0],
    [1, 3, 1, 0],
    [16, 200, 3, 0],
    [5, 65, 1, 0],
    [3, 769, 2, 0],
    [2, 3073, 1, 0],
    [300, 37, 1, 0],
    // Large-magnitude logits: only a max-shifted log-sum-exp stays finite.
    [16, 200, 40, 5000],
  ];
  for (const [b, c, std, offset] of cases) {
    for (const eps of [0, 0.1]) {
      it(`[${b}, ${c}] logits ~ ${offset} ± ${std}, smoothing ${eps}`, async () => {
        const xs = rng.normal(b * c, std).map((v) => v + offset);
        const labels = rng.ints(b, c);
        const logits = tensor(dev, xs, [b, c], { requiresGrad: true });
        const loss = scope(() => {
          const loss = crossEntropy(logits, labels, { labelSmoothing: eps });
          // A loss gradient other than 1 checks that backward scales by it.
          backward(scale(loss, 2.5));
          return loss;
        });
        expect(loss.shape).toEqual([]);
        const want = crossEntropyRef(f64(xs, [b, c]), labels, eps);
        assertClose(await loss.read(), [want], { atol: 1e-5, rtol: 1e-5 }, 'loss');
        const dref = crossEntropyBackwardRef(f64(xs, [b, c]), labels, eps).data.map((v) => 2.5 * v);
        assertClose(await logits.grad!.read(), dref, { atol: 1e-6 / b, rtol: 1e-4 }, 'dlogits');
      });
    }
  }

  it('takes labels already on the GPU', async () => {
    const xs = rng.normal(4 * 9);
    const labels = new Int32Array([8, 0, 3, 3]);
    const loss = crossEntropy(tensor(dev, xs, [4, 9]), tensor(dev, labels, [4]));
    assertClose(await loss.read(), [crossEntropyRef(f64(xs, [4, 9]), labels, 0)], { atol: 1e-5, rtol: 1e-5 }, 'loss');
  });

  it('rejects host labels out of range, and makes a GPU label out of range NaN', async () => {
    const logits = tensor(dev, rng.normal(2 * 3), [2, 3], { requiresGrad: true });
    expect(() => crossEntropy(logits, [0, 3])).toThrow(/crossEntropy: label 3 at 1 is outside \[0, 3\)/);
    const loss = crossEntropy(logits, tensor(dev, new Int32Array([1, -1]), [2]));
    expect(Number.isNaN(await loss.item())).toBe(true);
    backward(loss);
    const g = await logits.grad!.read();
    expect([...g.slice(0, 3)].every(Number.isFinite)).toBe(true);
    expect([...g.slice(3)].every(Number.isNaN)).toBe(true);
  });

  it('names the op and shapes on mismatched labels', () => {
    expect(() => crossEntropy(tensor(dev, [1, 2, 3, 4], [2, 2]), tensor(dev, new Int32Array([0, 1, 1]), [3]))).toThrow(
      /crossEntropy: labels must be i32 \[2\] for logits \[2, 2\], got i32 \[3\]/,
    );
  });
});
