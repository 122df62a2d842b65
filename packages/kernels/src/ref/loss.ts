// Float64 references for the classification loss, written from the definitions.
import type { F64 } from './array.js';
import { logSoftmaxRef } from './softmax.js';

/** mean_b [ (1-ε)·(-log p[b, y_b]) + ε·mean_c(-log p[b, c]) ] over logits [B, C]. */
export function crossEntropyRef(logits: F64, labels: ArrayLike<number>, smoothing: number): number {
  const [rows, n] = logits.shape as [number, number];
  const logp = logSoftmaxRef(logits).data;
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let all = 0;
    for (let c = 0; c < n; c++) all -= logp[r * n + c]!;
    total += (1 - smoothing) * -logp[r * n + labels[r]!]! + (smoothing * all) / n;
  }
  return total / rows;
}

/** d crossEntropy / d logits = (softmax - ((1-ε)·onehot + ε/C)) / B. */
export function crossEntropyBackwardRef(logits: F64, labels: ArrayLike<number>, smoothing: number): F64 {
  const [rows, n] = logits.shape as [number, number];
  const logp = logSoftmaxRef(logits).data;
  const dx = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < n; c++) {
      const target = smoothing / n + (c === labels[r] ? 1 - smoothing : 0);
      dx[r * n + c] = (Math.exp(logp[r * n + c]!) - target) / rows;
    }
  }
  return { data: dx, shape: [rows, n] };
}
