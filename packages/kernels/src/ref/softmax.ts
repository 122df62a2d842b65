// Float64 references for softmax and log-softmax over the last axis, written from the definitions.
import type { F64 } from './array.js';

/** log p per row, p = softmax of the row; the log-sum-exp shifted by the row maximum. */
export function logSoftmaxRef(x: F64): F64 {
  const n = x.shape[x.shape.length - 1]!;
  const rows = x.data.length / n;
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let i = 0; i < n; i++) m = Math.max(m, x.data[r * n + i]!);
    let s = 0;
    for (let i = 0; i < n; i++) s += Math.exp(x.data[r * n + i]! - m);
    const lse = m + Math.log(s);
    for (let i = 0; i < n; i++) out[r * n + i] = x.data[r * n + i]! - lse;
  }
  return { data: out, shape: [...x.shape] };
}

/** softmax per row, exp(x - max) / Σ exp(x - max). */
export function softmaxRef(x: F64): F64 {
  return { data: logSoftmaxRef(x).data.map(Math.exp), shape: [...x.shape] };
}

/** Gradient of Σ g·softmax(x): dx = y ⊙ (g - Σ_row g⊙y). */
export function softmaxBackwardRef(g: F64, x: F64): F64 {
  const n = x.shape[x.shape.length - 1]!;
  const y = softmaxRef(x).data;
  const dx = new Float64Array(y.length);
  for (let r = 0; r < y.length / n; r++) {
    let gy = 0;
    for (let i = 0; i < n; i++) gy += g.data[r * n + i]! * y[r * n + i]!;
    for (let i = 0; i < n; i++) dx[r * n + i] = y[r * n + i]! * (g.data[r * n + i]! - gy);
  }
  return { data: dx, shape: [...x.shape] };
}

/** Gradient of Σ g·logSoftmax(x): dx = g - softmax(x)·Σ_row g. */
export function logSoftmaxBackwardRef(g: F64, x: F64): F64 {
  const n = x.shape[x.shape.length - 1]!;
  const y = softmaxRef(x).data;
  const dx = new Float64Array(y.length);
  for (let r = 0; r < y.length / n; r++) {
    let gs = 0;
    for (let i = 0; i < n; i++) gs += g.data[r * n + i]!;
    for (let i = 0; i < n; i++) dx[r * n + i] = g.data[r * n + i]! - y[r * n + i]! * gs;
  }
  return { data: dx, shape: [...x.shape] };
}
