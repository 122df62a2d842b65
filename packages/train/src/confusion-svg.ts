// The confusion matrix as a picture (SVG text, written by hand): one cell per (true, predicted)
// pair, shaded by the share of the true class's images predicted as that class, so a class with
// few test images reads as clearly as one with many. Only non-empty cells are drawn: a matrix of
// 555 classes has 308 025 cells but at most one per test image is non-empty. Class names label the
// rows and columns while they fit (up to MAX_LABELLED classes); beyond that the axes give indices.

/** Up to this many classes the rows and columns carry the class names. */
export const MAX_LABELLED = 60;

// XML 1.0 allows no control characters besides tab, LF and CR: a class name from a dataset list
// could hold one and make the whole file unreadable.
function escapeXml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

function shorten(name: string, max = 36): string {
  return name.length <= max ? name : `${name.slice(0, max - 1)}…`;
}

/** White (0) to dark blue (1). */
function shade(f: number): string {
  const t = Math.min(1, Math.max(0, f));
  const mix = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 8)},${mix(255, 48)},${mix(255, 107)})`;
}

export interface ConfusionSvgOptions {
  title?: string;
}

/** confusion[true][predicted] counts as an SVG document. */
export function confusionSvg(classes: readonly string[], confusion: readonly (readonly number[])[], opts: ConfusionSvgOptions = {}): string {
  const C = classes.length;
  const labelled = C <= MAX_LABELLED;
  const cell = Math.max(2, Math.min(40, Math.floor(720 / Math.max(1, C))));
  const labelWidth = labelled ? Math.min(36, Math.max(1, ...classes.map((c) => shorten(c).length))) * 7 + 10 : 40;
  const left = labelWidth + 24;
  const top = 40 + labelWidth + 20;
  const side = cell * C;
  const legend = { x: left + side + 24, w: 14, h: Math.max(120, Math.min(side, 240)) };
  const W = Math.max(legend.x + legend.w + 48, 440);
  const H = top + Math.max(side, legend.h) + 40;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  const title = opts.title ?? 'confusion matrix';
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);
  out.push(`<text x="${left + side / 2}" y="${top - labelWidth - 8}" text-anchor="middle" font-size="12">predicted class</text>`);
  out.push(`<text transform="translate(14,${top + side / 2}) rotate(-90)" text-anchor="middle" font-size="12">true class</text>`);
  confusion.forEach((row, i) => {
    const total = row.reduce((a, n) => a + n, 0);
    row.forEach((n, j) => {
      if (n <= 0 || total === 0) return;
      const f = n / total;
      const tip = `${classes[i] ?? i} → ${classes[j] ?? j}: ${n} of ${total}`;
      out.push(`<rect x="${left + j * cell}" y="${top + i * cell}" width="${cell}" height="${cell}" fill="${shade(f)}"><title>${escapeXml(tip)}</title></rect>`);
    });
  });
  out.push(`<rect x="${left}" y="${top}" width="${side}" height="${side}" fill="none" stroke="#333"/>`);
  if (labelled) {
    const fs = Math.min(12, Math.max(7, cell - 2));
    classes.forEach((c, k) => {
      const mid = (k + 0.5) * cell;
      out.push(`<text x="${left - 4}" y="${(top + mid + fs / 3).toFixed(1)}" text-anchor="end" font-size="${fs}">${escapeXml(shorten(c))}</text>`);
      out.push(`<text transform="translate(${(left + mid + fs / 3).toFixed(1)},${top - 4}) rotate(-90)" font-size="${fs}">${escapeXml(shorten(c))}</text>`);
    });
  } else {
    // Indices at round steps along both axes.
    const step = [1, 2, 5, 10, 20, 50, 100, 200, 500].find((s) => C / s <= 10) ?? 1000;
    for (let k = 0; k < C; k += step) {
      const mid = (k + 0.5) * cell;
      out.push(`<text x="${left - 4}" y="${(top + mid + 4).toFixed(1)}" text-anchor="end" font-size="10">${k}</text>`);
      out.push(`<text x="${(left + mid).toFixed(1)}" y="${top - 4}" text-anchor="middle" font-size="10">${k}</text>`);
    }
  }
  // The colour scale: share of the true class's images.
  const steps = 20;
  for (let s = 0; s < steps; s++) {
    const y = top + legend.h - ((s + 1) * legend.h) / steps;
    out.push(`<rect x="${legend.x}" y="${y.toFixed(1)}" width="${legend.w}" height="${(legend.h / steps + 0.5).toFixed(1)}" fill="${shade((s + 0.5) / steps)}"/>`);
  }
  out.push(`<rect x="${legend.x}" y="${top}" width="${legend.w}" height="${legend.h}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${legend.x + legend.w + 4}" y="${top + 4}" font-size="10">100%</text>`);
  out.push(`<text x="${legend.x + legend.w + 4}" y="${top + legend.h + 4}" font-size="10">0%</text>`);
  out.push(`<text x="10" y="${H - 14}" font-size="11" fill="#555">shade: share of a row's images predicted as the column's class</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
