import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, add, backward, expand, mul, permute, scope, slice, sum, tensor, transpose } from '../index.js';
import { launchBinary, launchUnary } from '../raw.js';
import { Rng, assertClose, binaryRef, f64, geluRef, quickGeluRef, sigmoidRef, sumRef, testDevice, unaryRef } from '../testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(7);

const binaryCases: [number[], number[]][] = [
  [[1], [1]],
  [[7], [7]],
  [[3, 5], [3, 5]],
  [[3, 1], [1, 5]],
  [[2, 3, 4, 5], [5]],
  [[2, 1, 4, 1, 3], [4, 1, 1]],
  [[1000003], [1000003]],
  // Contiguous with a size that is a multiple of 4: the vec4 kernels.
  [[4, 6], [4, 6]],
  [[1000004], [1000004]],
];

const binaryFns = {
  add: (a: number, b: number) => a + b,
  sub: (a: number, b: number) => a - b,
  mul: (a: number, b: number) => a * b,
  div: (a: number, b: number) => a / b,
};

describe('binary kernels', () => {
  for (const [op, f] of Object.entries(binaryFns)) {
    for (const [sa, sb] of binaryCases) {
      it(`${op} ${JSON.stringify(sa)} ∘ ${JSON.stringify(sb)}`, async () => {
        const na = sa.reduce((x, y) => x * y, 1);
        const nb = sb.reduce((x, y) => x * y, 1);
        const a = rng.uniform(na, -2, 2);
        const b = op === 'div' ? rng.uniform(nb, 0.5, 2) : rng.uniform(nb, -2, 2);
        const out = launchBinary(op as keyof typeof binaryFns, tensor(dev, a, sa), tensor(dev, b, sb));
        const want = binaryRef(f, f64(a, sa), f64(b, sb));
        expect(out.shape).toEqual(want.shape);
        assertClose(await out.read(), want.data, { atol: 1e-6, rtol: 1e-6 }, op);
      });
    }
  }

  it('reads strided views (transposed, sliced) without copying them first', async () => {
    const a = rng.uniform(4 * 6);
    const b = rng.uniform(6 * 4);
    const ta = tensor(dev, a, [4, 6]);
    const tb = transpose(tensor(dev, b, [4, 6]));
    const out = launchBinary('add', slice(ta, 1, 1, 5), slice(tb, 0, 2, 6));
    const want: number[] = [];
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) want.push(a[i * 6 + 1 + j]! + b[j * 6 + i + 2]!);
    assertClose(await out.read(), want, {}, 'strided add');
  });

  it('takes vec4 kernels only where size and offsets are multiples of 4, with the same results', async () => {
    const a = rng.uniform(64, -2, 2);
    const b = rng.uniform(64, -2, 2);
    const ta = tensor(dev, a);
    const tb = tensor(dev, b);
    // Offsets 4 and 8 (vec4), then 2 and 8 (scalar), then size 30 (scalar).
    for (const [oa, ob, n] of [[4, 8, 32], [2, 8, 32], [4, 8, 30]] as const) {
      const out = launchBinary('mul', slice(ta, 0, oa, oa + n), slice(tb, 0, ob, ob + n));
      assertClose(await out.read(), Array.from({ length: n }, (_, i) => a[oa + i]! * b[ob + i]!), { atol: 1e-6, rtol: 1e-6 }, `mul at ${oa}, ${ob}, n ${n}`);
    }
    const before = dev.counts.pipelines;
    launchBinary('maximum', ta, tb).dispose();
    launchBinary('maximum', slice(ta, 0, 1, 5), slice(tb, 0, 1, 5)).dispose();
    await dev.sync();
    // One pipeline per form: the vec4 one and the scalar one.
    expect(dev.counts.pipelines - before).toBe(2);
  });

  it('names the op and shapes when shapes do not broadcast', () => {
    expect(() => launchBinary('add', tensor(dev, [1, 2, 3], [3]), tensor(dev, [1, 2], [2]))).toThrow(/add: shapes \[3\] and \[2\] do not broadcast/);
  });
});

describe('unary kernels', () => {
  const x = rng.uniform(5001, -6, 6);
  const cases: [Parameters<typeof launchUnary>[0], (v: number) => number, number][] = [
    ['gelu', geluRef, 0],
    ['quick_gelu', quickGeluRef, 0],
    ['sigmoid', sigmoidRef, 0],
    ['exp', Math.exp, 0],
    ['scale', (v) => v * -1.5, -1.5],
    ['neg', (v) => -v, 0],
  ];
  for (const [op, f, alpha] of cases) {
    it(op, async () => {
      const out = launchUnary(op, tensor(dev, x), alpha);
      assertClose(await out.read(), unaryRef(f, f64(x, [x.length])).data, { atol: 2e-6, rtol: 2e-6 }, op);
      // 5000 elements from offset 0 and 4: the vec4 kernel.
      for (const off of [0, 4]) {
        const part = x.slice(off, off + 4996);
        const v = launchUnary(op, slice(tensor(dev, x), 0, off, off + 4996), alpha);
        assertClose(await v.read(), unaryRef(f, f64(part, [part.length])).data, { atol: 2e-6, rtol: 2e-6 }, `${op} vec4 at ${off}`);
      }
    });
  }
});

describe('sum', () => {
  const cases: [number[], number[]][] = [
    [[1], [0]],
    [[5, 7], [1]],
    [[5, 7], [0]],
    [[3, 4, 5], [0, 2]],
    [[2, 3, 4, 5], [1, 2]],
    [[70001], [0]],
    [[3, 300], [0]],
    // Leading axes of a contiguous tensor, columns a multiple of 4: the column-sum kernel, in one
    // pass and (beyond 16384 rows on a CPU adapter) in two, chunks then their sum.
    [[3, 8], [0]],
    [[2, 150, 64], [0, 1]],
    [[20000, 8], [0]],
    // 50 vec4 columns: several workgroups, the last one partly idle.
    [[300, 200], [0]],
  ];
  for (const [shape, axes] of cases) {
    it(`${JSON.stringify(shape)} over ${JSON.stringify(axes)}`, async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = rng.uniform(n);
      const out = sum(tensor(dev, x, shape), axes);
      const want = sumRef(f64(x, shape), axes, false);
      expect(out.shape).toEqual(want.shape);
      assertClose(await out.read(), want.data, { atol: 1e-4, rtol: 1e-5 }, 'sum');
    });
  }

  it('of a permuted view', async () => {
    const x = rng.uniform(2 * 3 * 4);
    const out = sum(permute(tensor(dev, x, [2, 3, 4]), [2, 0, 1]), [2]);
    const want = sumRef(f64(x, [2, 3, 4]), [1], false); // (2,4) -> permuted (4,2)
    const wantT: number[] = [];
    for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) wantT.push(want.data[i * 4 + k]!);
    assertClose(await out.read(), wantT, {}, 'permuted sum');
  });
});

describe('autograd through views and broadcasting', () => {
  it('reduces broadcast gradients to the input shape and accumulates across uses', async () => {
    const a = tensor(dev, [1, 2, 3], [3], { requiresGrad: true });
    const b = tensor(dev, [10, 20], [2, 1], { requiresGrad: true });
    scope(() => {
      const y = launchBinaryDiff(a, b);
      backward(y);
    });
    // y = sum(a*b + a) over the (2,3) broadcast: dy/da = b0 + b1 + 2, dy/db_i = sum(a)
    assertClose(await a.grad!.read(), [32, 32, 32], {}, 'grad a');
    assertClose(await b.grad!.read(), [6, 6], {}, 'grad b');
  });

  it('expand backward sums over the expanded dims', async () => {
    const a = tensor(dev, [1, 2], [2, 1], { requiresGrad: true });
    scope(() => backward(sum(expand(a, [3, 2, 4]))));
    assertClose(await a.grad!.read(), [12, 12], {}, 'expand grad');
  });
});

function launchBinaryDiff(a: ReturnType<typeof tensor>, b: ReturnType<typeof tensor>) {
  return sum(add(mul(a, b), a));
}
