// Float64 references for elementwise ops and reductions.
import { type F64, broadcastIndex, unravel } from './array.js';

export function broadcastShape(a: number[], b: number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[i - (r - a.length)] ?? 1;
    const y = b[i - (r - b.length)] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`ref: [${a}] and [${b}] do not broadcast`);
    out.push(Math.max(x, y));
  }
  return out;
}

export function binaryRef(f: (a: number, b: number) => number, a: F64, b: F64): F64 {
  const shape = broadcastShape(a.shape, b.shape);
  const n = shape.reduce((x, y) => x * y, 1);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, shape);
    out[i] = f(a.data[broadcastIndex(idx, a.shape)]!, b.data[broadcastIndex(idx, b.shape)]!);
  }
  return { data: out, shape };
}

export function unaryRef(f: (x: number) => number, x: F64): F64 {
  return { data: x.data.map(f), shape: [...x.shape] };
}

/** erf in float64: Maclaurin series for |x| < 3, continued fraction of erfc beyond. */
export function erf64(x: number): number {
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 100; n++) {
      term *= (-a * a) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(a) = exp(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
  let f = a;
  for (let k = 60; k >= 1; k--) f = a + k / 2 / f;
  const erfc = Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));

export const geluRef = (x: number) => 0.5 * x * (1 + erf64(x / Math.SQRT2));
export const quickGeluRef = (x: number) => x * sig(1.702 * x);
export const sigmoidRef = sig;

/** Sum over `axes` (sorted, unique), dropping them or keeping them as size 1. */
export function sumRef(x: F64, axes: number[], keepDims: boolean): F64 {
  const outShapeKeep = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const n = outShapeKeep.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  for (let i = 0; i < x.data.length; i++) {
    const idx = unravel(i, x.shape);
    let o = 0;
    for (let k = 0; k < idx.length; k++) o = o * outShapeKeep[k]! + (axes.includes(k) ? 0 : idx[k]!);
    out[o]! += x.data[i]!;
  }
  return { data: out, shape: keepDims ? outShapeKeep : x.shape.filter((_, i) => !axes.includes(i)) };
}
