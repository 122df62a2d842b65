// Per-class results of an evaluation: each class's test images, its top-1 under every head and the
// class its images are most often taken for (by the head the model ships with, whose predictions
// the confusion matrix counts). `eval --per-class` prints them; the model card lists the worst.
import type { EvalResult, Head } from './eval.js';

export interface ClassRow {
  /** The class's index in the dataset (and the model's output). */
  index: number;
  name: string;
  /** Test images of the class. */
  count: number;
  /** Top-1 of each head on the class's images (null: the class has no test image). */
  top1: Partial<Record<Head, number | null>>;
  /** The wrong class its images were predicted as most often, and how many were (confusionHead). */
  confusedWith?: { index: number; name: string; count: number };
}

/** One row per class, in class order. */
export function classRows(result: Pick<EvalResult, 'heads' | 'perClass' | 'classCounts' | 'confusion'>, classes: readonly string[]): ClassRow[] {
  return classes.map((name, index) => {
    const top1 = Object.fromEntries(result.heads.map((h) => [h, result.perClass[h]?.[index] ?? null])) as ClassRow['top1'];
    const row: ClassRow = { index, name, count: result.classCounts[index] ?? 0, top1 };
    const counts = result.confusion[index] ?? [];
    let worst = -1;
    // Ties go to the lower class index, as argmax does.
    counts.forEach((n, j) => {
      if (j !== index && n > 0 && (worst < 0 || n > counts[worst]!)) worst = j;
    });
    if (worst >= 0) row.confusedWith = { index: worst, name: classes[worst] ?? String(worst), count: counts[worst]! };
    return row;
  });
}

/**
 * The rows with test images, lowest top-1 of `head` first; ties by more images first (a class that
 * failed 10 of 10 before one that failed 1 of 1), then by class order.
 */
export function worstFirst(rows: readonly ClassRow[], head: Head): ClassRow[] {
  return rows
    .filter((r) => r.count > 0 && typeof r.top1[head] === 'number')
    .sort((a, b) => a.top1[head]! - b.top1[head]! || b.count - a.count || a.index - b.index);
}
