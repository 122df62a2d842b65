// Evaluation of every head MP-FGVC reports (docs/method.md §9): the vision classifier ŷ_1, the
// image-text cosine logits, VLFM's ŷ_2 and their ensemble (mean of the three softmaxes). Top-1,
// top-5 and per-class accuracy of each; the confusion matrix is the ensemble's, the prediction the
// model ships with. The ViT-only model (objective 'vision') has the vision head alone: the others
// are absent from the result, not filled with numbers of untrained heads. One read-back per batch,
// issued before the next batch is recorded.
import { type Tensor, concat, keep, noGrad, scope, tensor } from '@mpfgvc/kernels';
import { HEADS, type Head, type MPFGVC } from '@mpfgvc/model';
import type { DataBatch } from './loop/data.js';

export { HEADS, type Head };

export interface EvalResult {
  count: number;
  /** The model's heads (MPFGVC.heads), the keys of top1, top5 and perClass. */
  heads: Head[];
  top1: Partial<Record<Head, number>>;
  top5: Partial<Record<Head, number>>;
  /** Accuracy of each class (null for a class without test images). */
  perClass: Partial<Record<Head, (number | null)[]>>;
  classCounts: number[];
  /** The head the model ships with: the ensemble, or the vision head of a ViT-only model. */
  confusionHead: Head;
  /** Predictions of confusionHead: confusion[true][predicted]. */
  confusion: number[][];
}

/** Rank of `label` among `scores` (0 = top-1); ties go to the lower class index, as argmax does. */
export function rankOf(scores: Float32Array, offset: number, n: number, label: number): number {
  const s = scores[offset + label]!;
  let rank = 0;
  for (let c = 0; c < n; c++) {
    const v = scores[offset + c]!;
    if (v > s || (v === s && c < label)) rank++;
  }
  return rank;
}

function argmax(scores: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let c = 1; c < n; c++) if (scores[offset + c]! > scores[offset + best]!) best = c;
  return best;
}

/**
 * Runs `batches` (image rows of the model's input size) through every head. `text` is T from
 * textFeatures(); computed here when not given and the model has text heads.
 */
export async function evaluate(model: MPFGVC, batches: AsyncIterable<DataBatch>, text?: Tensor): Promise<EvalResult> {
  const C = model.config.numClasses;
  const S = model.config.vision.imageSize;
  const heads = [...model.heads];
  const shipped: Head = heads.includes('ensemble') ? 'ensemble' : 'vision';
  const shippedAt = heads.indexOf(shipped);
  const T = text ?? (model.visionOnly ? undefined : keep(noGrad(() => model.textFeatures())));
  const hits1 = Object.fromEntries(heads.map((h) => [h, 0])) as Record<Head, number>;
  const hits5 = { ...hits1 };
  const classHits = Object.fromEntries(heads.map((h) => [h, new Array<number>(C).fill(0)])) as Record<Head, number[]>;
  const classCounts = new Array<number>(C).fill(0);
  const confusion = Array.from({ length: C }, () => new Array<number>(C).fill(0));
  let count = 0;
  const tally = (scores: Float32Array, labels: Int32Array) => {
    const B = labels.length;
    for (let i = 0; i < B; i++) {
      const y = labels[i]!;
      classCounts[y]!++;
      heads.forEach((h, k) => {
        const off = (k * B + i) * C;
        const r = rankOf(scores, off, C, y);
        if (r === 0) {
          hits1[h]++;
          classHits[h][y]!++;
        }
        if (r < 5) hits5[h]++;
      });
      confusion[y]![argmax(scores, (shippedAt * B + i) * C, C)]!++;
    }
    count += B;
  };
  let pending: { read: Promise<Float32Array>; labels: Int32Array } | undefined;
  try {
    for await (const b of batches) {
      if (b.size === 0) continue;
      const all = scope(() => {
        const x = tensor(model.device, b.rows, [b.size, 3, S, S]);
        const p = model.predict(x, T);
        return concat(heads.map((h) => p[h]!), 0); // (heads·B, C)
      });
      const read = all.read().then((v) => v as Float32Array);
      read.finally(() => all.dispose()).catch(() => undefined);
      if (pending) tally(await pending.read, pending.labels);
      pending = { read, labels: b.labels };
    }
    if (pending) tally(await pending.read, pending.labels);
  } finally {
    if (!text) T?.dispose();
  }
  const frac = (k: number) => (count ? k / count : 0);
  const rec = <V>(f: (h: Head) => V) => Object.fromEntries(heads.map((h) => [h, f(h)])) as Partial<Record<Head, V>>;
  return {
    count,
    heads,
    top1: rec((h) => frac(hits1[h])),
    top5: rec((h) => frac(hits5[h])),
    perClass: rec((h) => classHits[h].map((k, c) => (classCounts[c] ? k / classCounts[c]! : null))),
    classCounts,
    confusionHead: shipped,
    confusion,
  };
}

/** The confusion matrix as CSV: a header of predicted class names, one row per true class. */
export function confusionCsv(classes: readonly string[], confusion: readonly (readonly number[])[]): string {
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  const lines = [['true \\ predicted', ...classes].map(q).join(',')];
  confusion.forEach((row, i) => lines.push([q(classes[i]!), ...row.map(String)].join(',')));
  return lines.join('\n') + '\n';
}
