// Helpers shared by the tests of every package: a device per test file, seeded random data,
// tolerance checks that print the first mismatches and the worst, and finite differences.
import { type DeviceOptions } from '../device.js';
import { type Device, requestDevice } from '../runtime.js';

let shared: Promise<Device> | undefined;

/** One device for the whole test process (opening a device costs a driver start). */
export function testDevice(opts: DeviceOptions = {}): Promise<Device> {
  shared ??= requestDevice(opts);
  return shared;
}

/** xoshiro128** seeded through splitmix32: fast, deterministic, good enough for test data. */
export class Rng {
  private s: Uint32Array;

  constructor(seed: number) {
    this.s = new Uint32Array(4);
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  uniform(n: number, lo = -1, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.next();
    return out;
  }

  normal(n: number, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = Math.max(1e-12, this.next());
      out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
    }
    return out;
  }

  ints(n: number, hi: number): Int32Array {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * hi);
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
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
export * from '../ref/gather.js';
export * from '../ref/patch.js';
export * from '../ref/norm.js';
export * from '../ref/softmax.js';
export * from '../ref/loss.js';
export * from '../ref/topk.js';
export * from '../ref/optim.js';
export * from '../ref/vlfm.js';
export * from '../ref/matmul.js';
