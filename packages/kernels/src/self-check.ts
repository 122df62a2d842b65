// A quick end-to-end check of the device: runs a few kernels and compares them with the float64
// references. Used by `mpfgvc info --check` and the demo.
import { backward } from './autograd.js';
import { gelu, mul, sum } from './functional.js';
import { launchBinary } from './ops/elementwise.js';
import { binaryRef, geluRef, sumRef, unaryRef } from './ref/elementwise.js';
import { f64 } from './ref/array.js';
import type { Device } from './runtime.js';
import { scope, tensor } from './tensor.js';

export interface CheckResult {
  name: string;
  maxAbsError: number;
  tolerance: number;
  ok: boolean;
}

function maxErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i]! - want[i]!));
  return Number.isNaN(m) ? Infinity : m;
}

export async function selfCheck(dev: Device): Promise<CheckResult[]> {
  const n = 17 * 241;
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = Math.sin(i * 0.37) * 3;
    b[i] = Math.cos(i * 0.11) * 2;
  }
  const results: CheckResult[] = [];
  const check = (name: string, got: ArrayLike<number>, want: ArrayLike<number>, tolerance: number) => {
    const e = maxErr(got, want);
    results.push({ name, maxAbsError: e, tolerance, ok: e <= tolerance });
  };
  const ta = tensor(dev, a, [n], { requiresGrad: true });
  const tb = tensor(dev, b, [n]);
  const [added, activated, reduced] = scope(() => [launchBinary('add', ta, tb), gelu(ta), sum(tensor(dev, a, [17, 241]), [1])]);
  check('add', await added.read(), binaryRef((x, y) => x + y, f64(a, [n]), f64(b, [n])).data, 1e-6);
  check('gelu', await activated.read(), unaryRef(geluRef, f64(a, [n])).data, 1e-5);
  check('sum', await reduced.read(), sumRef(f64(a, [17, 241]), [1], false).data, 1e-4);
  scope(() => backward(sum(mul(ta, tb))));
  check('backward(sum(a*b)) = b', await ta.grad!.read(), b, 1e-6);
  for (const t of [ta, tb, added, activated, reduced]) t.dispose();
  await dev.sync();
  return results;
}
