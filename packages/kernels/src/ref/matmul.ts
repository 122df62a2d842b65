// Float64 reference of the batched matmul with bias and activation, and of its backward: naive
// loops over the broadcast batch, written from the math.
import { type F64, broadcastIndex, unravel } from './array.js';
import { broadcastShape, erf64, geluRef, quickGeluRef } from './elementwise.js';

export type ActivationRef = 'gelu' | 'quick_gelu' | 'relu';

export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: F64;
  activation?: ActivationRef;
  alpha?: number;
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));

export function activationRef(act: ActivationRef | undefined, x: number): number {
  if (act === 'gelu') return geluRef(x);
  if (act === 'quick_gelu') return quickGeluRef(x);
  if (act === 'relu') return Math.max(x, 0);
  return x;
}

/** d act(x) / dx. */
export function activationGradRef(act: ActivationRef | undefined, x: number): number {
  if (act === 'gelu') return 0.5 * (1 + erf64(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
  if (act === 'quick_gelu') return sig(1.702 * x) + 1.702 * x * sig(1.702 * x) * (1 - sig(1.702 * x));
  if (act === 'relu') return x > 0 ? 1 : 0;
  return 1;
}

interface Dims {
  batch: number[];
  M: number;
  K: number;
  N: number;
}

function dims(a: F64, b: F64, o: MatmulRefOptions): Dims {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const M = o.transA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const K = o.transA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const K2 = o.transB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const N = o.transB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (K !== K2) throw new Error(`matmulRef: inner dims ${K} and ${K2} differ`);
  return { batch: broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)), M, K, N };
}

/** Element offsets of A[m][k] and B[k][n] within the batch entry `bi` of the broadcast batch. */
function addressing(a: F64, b: F64, o: MatmulRefOptions, d: Dims) {
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const ra = a.shape.length;
  const rb = b.shape.length;
  const aMat = a.shape[ra - 2]! * a.shape[ra - 1]!;
  const bMat = b.shape[rb - 2]! * b.shape[rb - 1]!;
  const aCols = a.shape[ra - 1]!;
  const bCols = b.shape[rb - 1]!;
  return (bi: number) => {
    const idx = unravel(bi, d.batch);
    const baseA = broadcastIndex(idx, aBatch) * aMat;
    const baseB = broadcastIndex(idx, bBatch) * bMat;
    return {
      ia: (m: number, k: number) => baseA + (o.transA ? k * aCols + m : m * aCols + k),
      ib: (k: number, n: number) => baseB + (o.transB ? n * bCols + k : k * bCols + n),
    };
  };
}

/** Pre-activation z = alpha · op(A)·op(B) + bias, shape (...batch, M, N). */
function preActivation(a: F64, b: F64, o: MatmulRefOptions): F64 {
  const d = dims(a, b, o);
  const nb = d.batch.reduce((x, y) => x * y, 1);
  const out = new Float64Array(nb * d.M * d.N);
  const at = addressing(a, b, o, d);
  for (let bi = 0; bi < nb; bi++) {
    const { ia, ib } = at(bi);
    for (let m = 0; m < d.M; m++) {
      for (let n = 0; n < d.N; n++) {
        let s = 0;
        for (let k = 0; k < d.K; k++) s += a.data[ia(m, k)]! * b.data[ib(k, n)]!;
        out[(bi * d.M + m) * d.N + n] = (o.alpha ?? 1) * s + (o.bias ? o.bias.data[n]! : 0);
      }
    }
  }
  return { data: out, shape: [...d.batch, d.M, d.N] };
}

export function matmulRef(a: F64, b: F64, o: MatmulRefOptions = {}): F64 {
  const z = preActivation(a, b, o);
  return { data: z.data.map((x) => activationRef(o.activation, x)), shape: z.shape };
}

/** Gradients of Σ g ⊙ matmulRef(a, b, o) with respect to a, b and the bias, each in its own shape. */
export function matmulBackwardRef(a: F64, b: F64, g: F64, o: MatmulRefOptions = {}): { da: F64; db: F64; dbias: F64 | null } {
  const d = dims(a, b, o);
  const z = preActivation(a, b, o);
  const nb = d.batch.reduce((x, y) => x * y, 1);
  const da = new Float64Array(a.data.length);
  const db = new Float64Array(b.data.length);
  const dbias = new Float64Array(d.N);
  const alpha = o.alpha ?? 1;
  const at = addressing(a, b, o, d);
  for (let bi = 0; bi < nb; bi++) {
    const { ia, ib } = at(bi);
    for (let m = 0; m < d.M; m++) {
      for (let n = 0; n < d.N; n++) {
        const i = (bi * d.M + m) * d.N + n;
        const dz = g.data[i]! * activationGradRef(o.activation, z.data[i]!);
        dbias[n]! += dz;
        for (let k = 0; k < d.K; k++) {
          da[ia(m, k)]! += alpha * dz * b.data[ib(k, n)]!;
          db[ib(k, n)]! += alpha * dz * a.data[ia(m, k)]!;
        }
      }
    }
  }
  return {
    da: { data: da, shape: [...a.shape] },
    db: { data: db, shape: [...b.shape] },
    dbias: o.bias ? { data: dbias, shape: [d.N] } : null,
  };
}
