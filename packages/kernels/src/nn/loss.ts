// Differentiable classification loss.
import { launchCrossEntropy, launchCrossEntropyBackward } from '../ops/loss.js';
import { Tensor, record, tensor } from '../tensor.js';

export interface CrossEntropyOptions {
  /** ε: the target is (1-ε)·onehot(label) + ε/C. Default 0. */
  labelSmoothing?: number;
}

/**
 * Mean cross-entropy of logits [B, C] against integer labels [B], shape []. Labels given as host
 * data are checked to lie in [0, C) before upload; a label tensor already on the GPU is not read
 * back, and an out-of-range label there makes the loss NaN (ops/loss.ts).
 */
export function crossEntropy(logits: Tensor, labels: Tensor | Int32Array | readonly number[], opts: CrossEntropyOptions = {}): Tensor {
  const smoothing = opts.labelSmoothing ?? 0;
  const host = !(labels instanceof Tensor);
  let lab: Tensor;
  if (host) {
    const values = labels;
    const classes = logits.shape[logits.rank - 1] ?? 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (!Number.isInteger(v) || v < 0 || v >= classes) throw new Error(`crossEntropy: label ${v} at ${i} is outside [0, ${classes}) for logits [${logits.shape.join(', ')}]`);
    }
    lab = tensor(logits.device, Int32Array.from(values), [values.length], { name: 'labels' });
  } else lab = labels;
  const { loss, stats } = launchCrossEntropy(logits, lab, smoothing);
  // stats and uploaded labels are disposed below: the tape keeps them pinned until the rule has run.
  record('cross_entropy', loss, [logits], (g) => [launchCrossEntropyBackward(g, logits, lab, stats, smoothing)], [logits, lab, stats]);
  stats.dispose();
  if (host) lab.dispose();
  return loss;
}
