// Float64 references for row gathers and their scatter-add gradients, as plain loops over the math.
import type { F64 } from './array.js';

/** out[b, k, :] = x[b, idx[b, k], :]; zeros where the index is out of range. */
export function gatherRowsRef(x: F64, idx: ArrayLike<number>, k: number): F64 {
  const [b, n, d] = x.shape as [number, number, number];
  const out = new Float64Array(b * k * d);
  for (let bi = 0; bi < b; bi++) {
    for (let ki = 0; ki < k; ki++) {
      const row = idx[bi * k + ki]!;
      if (row < 0 || row >= n) continue;
      for (let c = 0; c < d; c++) out[(bi * k + ki) * d + c] = x.data[(bi * n + row) * d + c]!;
    }
  }
  return { data: out, shape: [b, k, d] };
}

/** dx[b, n, :] = Σ_{k : idx[b, k] = n} g[b, k, :]: the gradient of gatherRowsRef. */
export function scatterAddRowsRef(g: F64, idx: ArrayLike<number>, n: number): F64 {
  const [b, k, d] = g.shape as [number, number, number];
  const out = new Float64Array(b * n * d);
  for (let bi = 0; bi < b; bi++) {
    for (let row = 0; row < n; row++) {
      for (let ki = 0; ki < k; ki++) {
        if (idx[bi * k + ki] !== row) continue;
        for (let c = 0; c < d; c++) out[(bi * n + row) * d + c]! += g.data[(bi * k + ki) * d + c]!;
      }
    }
  }
  return { data: out, shape: [b, n, d] };
}
