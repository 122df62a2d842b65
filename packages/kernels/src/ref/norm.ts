// Float64 references for normalisation over the last axis, written from the definitions.
import type { F64 } from './array.js';

function rowsOf(x: F64): { rows: number; n: number } {
  const n = x.shape[x.shape.length - 1]!;
  return { rows: x.data.length / n, n };
}

/** y = (x - μ)/sqrt(σ² + eps)·w + b per row, σ² the population variance; also μ and 1/sqrt(σ² + eps). */
export function layerNormRef(x: F64, w: Float64Array, b: Float64Array, eps: number): { y: F64; mean: Float64Array; rstd: Float64Array } {
  const { rows, n } = rowsOf(x);
  const y = new Float64Array(x.data.length);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let i = 0; i < n; i++) mu += x.data[r * n + i]!;
    mu /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x.data[r * n + i]! - mu) ** 2;
    v /= n;
    const s = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < n; i++) y[r * n + i] = (x.data[r * n + i]! - mu) * s * w[i]! + b[i]!;
    mean[r] = mu;
    rstd[r] = s;
  }
  return { y: { data: y, shape: [...x.shape] }, mean, rstd };
}

/**
 * Gradients of Σ g·layerNorm(x): with x̂ = (x - μ)·s and d = g·w,
 * dx = s·(d - mean(d) - x̂·mean(d·x̂)) per row, dw = Σ_rows g·x̂, db = Σ_rows g.
 */
export function layerNormBackwardRef(g: F64, x: F64, w: Float64Array, eps: number): { dx: F64; dw: Float64Array; db: Float64Array } {
  const { rows, n } = rowsOf(x);
  const { mean, rstd } = layerNormRef(x, w, new Float64Array(n), eps);
  const dx = new Float64Array(x.data.length);
  const dw = new Float64Array(n);
  const db = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    const xhat = new Float64Array(n);
    const d = new Float64Array(n);
    let md = 0;
    let mdx = 0;
    for (let i = 0; i < n; i++) {
      xhat[i] = (x.data[r * n + i]! - mean[r]!) * rstd[r]!;
      d[i] = g.data[r * n + i]! * w[i]!;
      md += d[i]!;
      mdx += d[i]! * xhat[i]!;
      dw[i]! += g.data[r * n + i]! * xhat[i]!;
      db[i]! += g.data[r * n + i]!;
    }
    md /= n;
    mdx /= n;
    for (let i = 0; i < n; i++) dx[r * n + i] = rstd[r]! * (d[i]! - md - xhat[i]! * mdx);
  }
  return { dx: { data: dx, shape: [...x.shape] }, dw, db };
}

/** y = x / max(‖x‖₂, eps) per row. */
export function l2NormalizeRef(x: F64, eps: number): F64 {
  const { rows, n } = rowsOf(x);
  const y = new Float64Array(x.data.length);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x.data[r * n + i]! ** 2;
    const d = Math.max(Math.sqrt(ss), eps);
    for (let i = 0; i < n; i++) y[r * n + i] = x.data[r * n + i]! / d;
  }
  return { data: y, shape: [...x.shape] };
}

/**
 * Gradient of Σ g·l2Normalize(x): where ‖x‖ > eps, dx = (g - y·(g·y))/‖x‖ (the projection of g
 * orthogonal to y); where the norm is clamped to eps, y = x/eps and dx = g/eps.
 */
export function l2NormalizeBackwardRef(g: F64, x: F64, eps: number): F64 {
  const { rows, n } = rowsOf(x);
  const dx = new Float64Array(x.data.length);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x.data[r * n + i]! ** 2;
    const norm = Math.sqrt(ss);
    if (norm <= eps) {
      for (let i = 0; i < n; i++) dx[r * n + i] = g.data[r * n + i]! / eps;
      continue;
    }
    let gy = 0;
    for (let i = 0; i < n; i++) gy += (g.data[r * n + i]! * x.data[r * n + i]!) / norm;
    for (let i = 0; i < n; i++) dx[r * n + i] = (g.data[r * n + i]! - (x.data[r * n + i]! / norm) * gy) / norm;
  }
  return { data: dx, shape: [...x.shape] };
}
