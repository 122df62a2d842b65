// What `eval` adds to its totals: the per-class table (worst class first, so the classes to look at
// come before the ones the model has learnt) and the confusion matrix as pictures beside --out.
import { basename, dirname, extname, join } from 'node:path';
import { type EvalResult, type Head, classRows, confusionSvg, worstFirst, writeFileAtomic } from '@mpfgvc/train';
import { printable } from '../errors.js';
import { svgToPng } from './png.js';

export interface PerClassLine {
  class: string;
  index: number;
  count: number;
  top1: Partial<Record<Head, number | null>>;
  /** The class its images are most often predicted as (by the shipped head), and how many are. */
  confusedWith?: { class: string; count: number };
}

/** Every class with test images, worst first by the shipped head's top-1 (ties: more images, then class order). */
export function perClassLines(result: EvalResult, classes: readonly string[]): PerClassLine[] {
  return worstFirst(classRows(result, classes), result.confusionHead).map((r) => ({
    class: r.name,
    index: r.index,
    count: r.count,
    top1: r.top1,
    ...(r.confusedWith ? { confusedWith: { class: r.confusedWith.name, count: r.confusedWith.count } } : {}),
  }));
}

/** The per-class table as text, one row per class. */
export function perClassTable(lines: readonly PerClassLine[], heads: readonly Head[], shipped: Head): string {
  const names = lines.map((l) => printable(l.class));
  const width = Math.min(48, Math.max(5, ...names.map((n) => n.length)));
  const cut = (s: string) => (s.length <= width ? s.padEnd(width) : `${s.slice(0, width - 1)}…`);
  const pct = (x: number | null | undefined) => (typeof x === 'number' ? `${(100 * x).toFixed(2)}%` : '-').padStart(10);
  const out = [`\nper class, worst ${shipped} top-1 first:\n`, `${'class'.padEnd(width)}  images${heads.map((h) => h.padStart(10)).join('')}  most often taken for\n`];
  lines.forEach((l, i) => {
    const taken = l.confusedWith ? `${printable(l.confusedWith.class)} (${l.confusedWith.count})` : '-';
    out.push(`${cut(names[i]!)}  ${String(l.count).padStart(6)}${heads.map((h) => pct(l.top1[h])).join('')}  ${taken}\n`);
  });
  return out.join('');
}

/** Where the confusion pictures of an evaluation written to `outJson` go: `<name>-confusion.svg/.png` beside it. */
export function confusionPaths(outJson: string): { svg: string; png: string } {
  const stem = join(dirname(outJson), basename(outJson, extname(outJson)));
  return { svg: `${stem}-confusion.svg`, png: `${stem}-confusion.png` };
}

/** Writes the confusion matrix of `result` as SVG and PNG beside `outJson`. */
export async function writeConfusionPictures(outJson: string, result: EvalResult, classes: readonly string[], title: string): Promise<{ svg: string; png: string }> {
  const paths = confusionPaths(outJson);
  const svg = confusionSvg(classes, result.confusion, { title });
  writeFileAtomic(paths.svg, svg);
  writeFileAtomic(paths.png, await svgToPng(svg));
  return paths;
}
