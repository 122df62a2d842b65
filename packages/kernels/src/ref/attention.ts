// Float64 references for multi-head attention, written from the math with the full score matrix:
// S = scale·Q·Kᵀ (masked), P = softmax(S) row-wise, O = P·V; and its backward
// dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = scale·dS·K, dK = scale·dSᵀ·Q.
import type { F64 } from './array.js';

export interface AttentionRefOptions {
  causal?: boolean;
  keyLength?: number;
  scale?: number;
}

interface Dims {
  B: number;
  H: number;
  Nq: number;
  Nk: number;
  d: number;
}

function dims(q: F64, k: F64): Dims {
  const [B, H, Nq, d] = q.shape as [number, number, number, number];
  return { B, H, Nq, d, Nk: k.shape[2]! };
}

function allowed(i: number, j: number, Nk: number, opts: AttentionRefOptions): boolean {
  if (j >= (opts.keyLength ?? Nk)) return false;
  return !(opts.causal && j > i);
}

/** P for one (b, h): Nq×Nk row-major, and the natural log-sum-exp of each row's scaled scores. */
function probs(q: F64, k: F64, b: number, h: number, dm: Dims, opts: AttentionRefOptions, rows = dm.Nq): { P: Float64Array; lse: Float64Array } {
  const { H, Nq, Nk, d } = dm;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const P = new Float64Array(rows * Nk);
  const lse = new Float64Array(rows);
  const qb = (b * H + h) * Nq * d;
  const kb = (b * H + h) * Nk * d;
  for (let i = 0; i < rows; i++) {
    let max = -Infinity;
    for (let j = 0; j < Nk; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += q.data[qb + i * d + c]! * k.data[kb + j * d + c]!;
      s *= scale;
      P[i * Nk + j] = allowed(i, j, Nk, opts) ? s : -Infinity;
      max = Math.max(max, P[i * Nk + j]!);
    }
    let sum = 0;
    for (let j = 0; j < Nk; j++) sum += Math.exp(P[i * Nk + j]! - max);
    for (let j = 0; j < Nk; j++) P[i * Nk + j] = Math.exp(P[i * Nk + j]! - max) / sum;
    lse[i] = max + Math.log(sum);
  }
  return { P, lse };
}

/** O (B, H, Nq, d) and the log-sum-exp of each query row (B, H, Nq). */
export function attentionRef(q: F64, k: F64, v: F64, opts: AttentionRefOptions = {}): { out: F64; lse: F64 } {
  const dm = dims(q, k);
  const { B, H, Nq, Nk, d } = dm;
  const out = new Float64Array(B * H * Nq * d);
  const lse = new Float64Array(B * H * Nq);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const r = probs(q, k, b, h, dm, opts);
      const vb = (b * H + h) * Nk * d;
      const ob = (b * H + h) * Nq * d;
      lse.set(r.lse, (b * H + h) * Nq);
      for (let i = 0; i < Nq; i++) {
        for (let j = 0; j < Nk; j++) {
          const pij = r.P[i * Nk + j]!;
          for (let c = 0; c < d; c++) out[ob + i * d + c]! += pij * v.data[vb + j * d + c]!;
        }
      }
    }
  }
  return { out: { data: out, shape: [B, H, Nq, d] }, lse: { data: lse, shape: [B, H, Nq] } };
}

/** Gradients of Σ dOut ⊙ attention(q, k, v) with respect to q, k and v. */
export function attentionBackwardRef(q: F64, k: F64, v: F64, dOut: F64, opts: AttentionRefOptions = {}): { dq: F64; dk: F64; dv: F64 } {
  const dm = dims(q, k);
  const { B, H, Nq, Nk, d } = dm;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const dq = new Float64Array(q.data.length);
  const dk = new Float64Array(k.data.length);
  const dv = new Float64Array(v.data.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const { P } = probs(q, k, b, h, dm, opts);
      const qb = (b * H + h) * Nq * d;
      const kb = (b * H + h) * Nk * d;
      const dP = new Float64Array(Nq * Nk);
      for (let i = 0; i < Nq; i++) {
        for (let j = 0; j < Nk; j++) {
          let s = 0;
          for (let c = 0; c < d; c++) s += dOut.data[qb + i * d + c]! * v.data[kb + j * d + c]!;
          dP[i * Nk + j] = s;
          for (let c = 0; c < d; c++) dv[kb + j * d + c]! += P[i * Nk + j]! * dOut.data[qb + i * d + c]!;
        }
      }
      for (let i = 0; i < Nq; i++) {
        let rowDot = 0;
        for (let j = 0; j < Nk; j++) rowDot += dP[i * Nk + j]! * P[i * Nk + j]!;
        for (let j = 0; j < Nk; j++) {
          const ds = P[i * Nk + j]! * (dP[i * Nk + j]! - rowDot) * scale;
          for (let c = 0; c < d; c++) {
            dq[qb + i * d + c]! += ds * k.data[kb + j * d + c]!;
            dk[kb + j * d + c]! += ds * q.data[qb + i * d + c]!;
          }
        }
      }
    }
  }
  return { dq: { data: dq, shape: [...q.shape] }, dk: { data: dk, shape: [...k.shape] }, dv: { data: dv, shape: [...v.shape] } };
}

/**
 * SsVP scores (B, Nk − 1): per image, the CLS query's (row 0) attention probability over each
 * patch key j ≥ 1, summed over heads. Softmax over all Nk keys, CLS key included.
 */
export function clsAttentionScoresRef(q: F64, k: F64, scale?: number): F64 {
  const dm = dims(q, k);
  const { B, H, Nk } = dm;
  const out = new Float64Array(B * (Nk - 1));
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const { P } = probs(q, k, b, h, dm, scale === undefined ? {} : { scale }, 1);
      for (let j = 1; j < Nk; j++) out[b * (Nk - 1) + j - 1]! += P[j]!;
    }
  }
  return { data: out, shape: [B, Nk - 1] };
}
