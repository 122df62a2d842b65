// Helpers shared by the tests of every package: a device per test file, seeded random data,
// tolerance checks that print the first mismatches and the worst, and finite differences.
import { type DeviceOptions } from '../device.js';
import { type Device, requestDevice } from '../runtime.js';

export { Rng } from '../rng.js';

let shared: Promise<Device> | undefined;

/** One device for the whole test process (opening a device costs a driver start). */
export function testDevice(opts: DeviceOptions = {}): Promise<Device> {
  shared ??= requestDevice(opts);
  return shared;
}

export interface Tolerance {
  atol?: number;
  rtol?: number;
}

/** Throws unless |got - want| <= atol + rtol·|want| everywhere; the message lists the first mismatches and the worst. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance = {}, what = 'values'): void {
  const atol = tol.atol ?? 1e-5;
  const rtol = tol.rtol ?? 1e-4;
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, expected ${want.length}`);
  const bad: string[] = [];
  let worst = -1;
  let worstExcess = 0;
  let count = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const err = Math.abs(g - w);
    const limit = atol + rtol * Math.abs(w);
    if (!(err <= limit) || Number.isNaN(g) !== Number.isNaN(w)) {
      if (Number.isNaN(g) && Number.isNaN(w)) continue;
      count++;
      if (bad.length < 5) bad.push(`[${i}] got ${g}, want ${w}`);
      const excess = Number.isFinite(err) ? err / limit : Infinity;
      if (worst < 0 || excess > worstExcess) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (count > 0) {
    throw new Error(
      `${what}: ${count}/${got.length} outside atol=${atol} rtol=${rtol}; first: ${bad.join('; ')}; worst [${worst}] got ${got[worst]}, want ${want[worst]}`,
    );
  }
}

/**
 * Central finite differences of a scalar float64 function: d f / d x[i] for every i.
 * `f` must not keep references to `x` between calls.
 */
export function numericGrad(f: (x: Float64Array) => number, x: Float64Array, eps = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = v + eps;
    const fp = f(x);
    x[i] = v - eps;
    const fm = f(x);
    x[i] = v;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

/** Σ w·y over a reference output, the scalar through which reference backwards are checked. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function toF64(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a as ArrayLike<number>);
}

export * from '../ref/array.js';
export * from '../ref/elementwise.js';
export * from '../ref/attention.js';
export * from '../ref/topk.js';
export * from '../ref/vlfm.js';
export * from '../ref/gather.js';
export * from '../ref/patch.js';
export * from '../ref/optim.js';
export * from '../ref/norm.js';
export * from '../ref/softmax.js';
export * from '../ref/loss.js';
export * from '../ref/matmul.js';
