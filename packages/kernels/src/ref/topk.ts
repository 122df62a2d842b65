// Float64 references for SsVP selection: a full sort per row (not a select), the gather of
// [CLS; selected tokens] and its scatter backward.
import type { F64 } from './array.js';

/** Sort key of a score: NaN below every number; −0 equals +0. */
function rank(x: number): number {
  return Number.isNaN(x) ? -Infinity : x === 0 ? 0 : x;
}

/** (B, K) indices of the K largest of each row of (B, N), ascending; ties to the lower index. */
export function topkRef(scores: ArrayLike<number>, B: number, N: number, K: number): Int32Array {
  const out = new Int32Array(B * K);
  for (let b = 0; b < B; b++) {
    const idx = [...Array(N).keys()];
    idx.sort((i, j) => {
      const si = scores[b * N + i]!;
      const sj = scores[b * N + j]!;
      // NaN ties with NaN only, and stays below −∞.
      const ni = Number.isNaN(si);
      const nj = Number.isNaN(sj);
      if (ni !== nj) return ni ? 1 : -1;
      const d = rank(sj) - rank(si);
      return d !== 0 && !Number.isNaN(d) ? d : i - j;
    });
    const chosen = idx.slice(0, K).sort((i, j) => i - j);
    out.set(chosen, b * K);
  }
  return out;
}

/** [CLS; tokens ids+1] of x (B, N+1, D) → (B, K+1, D). */
export function gatherTokensRef(x: F64, ids: Int32Array, K: number): F64 {
  const [B, N1, D] = x.shape as [number, number, number];
  const out = new Float64Array(B * (K + 1) * D);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r <= K; r++) {
      const tok = r === 0 ? 0 : ids[b * K + r - 1]! + 1;
      for (let c = 0; c < D; c++) out[(b * (K + 1) + r) * D + c] = x.data[(b * N1 + tok) * D + c]!;
    }
  }
  return { data: out, shape: [B, K + 1, D] };
}

/** Gradient of Σ g ⊙ gatherTokensRef(x) with respect to x (B, N+1, D). */
export function gatherTokensBackwardRef(g: F64, ids: Int32Array, N: number): F64 {
  const [B, K1, D] = g.shape as [number, number, number];
  const out = new Float64Array(B * (N + 1) * D);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < K1; r++) {
      const tok = r === 0 ? 0 : ids[b * (K1 - 1) + r - 1]! + 1;
      for (let c = 0; c < D; c++) out[(b * (N + 1) + tok) * D + c]! += g.data[(b * K1 + r) * D + c]!;
    }
  }
  return { data: out, shape: [B, N + 1, D] };
}
