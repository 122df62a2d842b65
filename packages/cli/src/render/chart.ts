// Line charts as SVG text, written by hand (no plotting dependency): axes with round-number
// ticks, one polyline per series, a legend. Rasterised to PNG by png.ts.

export interface Series {
  name: string;
  points: [number, number][];
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Fixed y range (e.g. [0, 100] for accuracy); default: the data's range. */
  yRange?: [number, number];
  /** Ticks only at whole numbers on x (epochs, steps). */
  integerX?: boolean;
  /** Dashed vertical lines with a label (e.g. where stage 2 begins). */
  markers?: { x: number; label: string }[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmtTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/** One chart occupying (x, y, w, h) of a larger SVG. */
export function chartSvg(spec: ChartSpec, x0: number, y0: number, w: number, h: number): string {
  const m = { left: 62, right: 16, top: 34, bottom: 46 };
  const pw = w - m.left - m.right;
  const ph = h - m.top - m.bottom;
  const all = spec.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const out: string[] = [];
  out.push(`<g transform="translate(${x0},${y0})">`);
  out.push(`<rect x="0" y="0" width="${w}" height="${h}" fill="#ffffff"/>`);
  out.push(`<text x="${w / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`);
  if (all.length === 0) {
    out.push(`<text x="${w / 2}" y="${h / 2}" text-anchor="middle" font-size="13" fill="#666">no data</text></g>`);
    return out.join('\n');
  }
  let [xlo, xhi] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [ylo, yhi] = spec.yRange ?? [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (xhi === xlo) [xlo, xhi] = [xlo - 1, xhi + 1];
  if (yhi === ylo) [ylo, yhi] = [ylo - 1, yhi + 1];
  if (!spec.yRange) {
    const pad = (yhi - ylo) * 0.05;
    [ylo, yhi] = [ylo - pad, yhi + pad];
  }
  const sx = (v: number) => m.left + ((v - xlo) / (xhi - xlo)) * pw;
  const sy = (v: number) => m.top + ph - ((v - ylo) / (yhi - ylo)) * ph;
  for (const t of niceTicks(ylo, yhi)) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${m.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" font-size="11">${fmtTick(t)}</text>`);
  }
  for (const t of niceTicks(xlo, xhi, 6).filter((v) => !spec.integerX || Number.isInteger(v))) {
    out.push(`<line x1="${sx(t).toFixed(1)}" x2="${sx(t).toFixed(1)}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#333"/>`);
    out.push(`<text x="${sx(t).toFixed(1)}" y="${m.top + ph + 17}" text-anchor="middle" font-size="11">${fmtTick(t)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${h - 8}" text-anchor="middle" font-size="12">${escapeXml(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(14,${m.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(spec.yLabel)}</text>`);
  for (const mk of spec.markers ?? []) {
    if (mk.x < xlo || mk.x > xhi) continue;
    const x = sx(mk.x).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + ph}" stroke="#888" stroke-dasharray="5,4"/>`);
    out.push(`<text x="${(sx(mk.x) + 4).toFixed(1)}" y="${m.top + ph - 6}" font-size="11" fill="#555">${escapeXml(mk.label)}</text>`);
  }
  spec.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    if (pts.length <= 30) for (const [x, y] of pts) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = m.top + 14 + i * 16;
    out.push(`<line x1="${m.left + pw - 120}" x2="${m.left + pw - 100}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<text x="${m.left + pw - 94}" y="${ly}" font-size="12">${escapeXml(s.name)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

/** Charts side by side in one SVG document. */
export function chartsSvg(charts: ChartSpec[], cell: { width: number; height: number } = { width: 560, height: 380 }): string {
  const W = cell.width * charts.length;
  const H = cell.height;
  const body = charts.map((c, i) => chartSvg(c, i * cell.width, 0, cell.width, cell.height)).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="#ffffff"/>\n${body}\n</svg>\n`;
}
