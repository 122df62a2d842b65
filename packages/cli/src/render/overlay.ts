// SsVP made visible: the network's input crop enlarged twice side by side, as it is on the left and
// on the right with every patch cell SsVP dropped dimmed and the kept ones outlined (an SVG layer
// composited by sharp). A small, dim input is unreadable under the dimming alone; next to the plain
// copy the eye finds the parts the cells cover.
import sharp from 'sharp';
import { escapeXml } from './chart.js';

export interface PatchOverlay {
  /** The crop the network saw, (S, S, 3) 8-bit RGB. */
  rgb: Uint8Array;
  size: number;
  patchSize: number;
  /** SsVP's selected patch ids (row-major over the grid). */
  selected: readonly number[];
  /** Lines printed under the image (e.g. the prediction), separated by newlines. */
  caption?: string;
  /** Side of each of the two panels in pixels; default max(448, S). */
  display?: number;
}

const LINE = 26;
/** Space between the plain panel and the overlaid one. */
export const PANEL_GAP = 12;

/** The layer over the right-hand panel (which starts at x = display + PANEL_GAP) and the caption. */
export function overlaySvg(o: PatchOverlay, display: number, captionHeight: number): string {
  const grid = o.size / o.patchSize;
  const cell = display / grid;
  const left = display + PANEL_GAP;
  const width = 2 * display + PANEL_GAP;
  const keep = new Set(o.selected);
  const parts: string[] = [];
  for (let id = 0; id < grid * grid; id++) {
    const x = left + (id % grid) * cell;
    const y = Math.floor(id / grid) * cell;
    if (!keep.has(id)) parts.push(`<rect x="${x.toFixed(2)}" y="${y.toFixed(2)}" width="${cell.toFixed(2)}" height="${cell.toFixed(2)}" fill="#000000" fill-opacity="0.45"/>`);
  }
  for (const id of keep) {
    const x = left + (id % grid) * cell;
    const y = Math.floor(id / grid) * cell;
    parts.push(`<rect x="${(x + 1).toFixed(2)}" y="${(y + 1).toFixed(2)}" width="${(cell - 2).toFixed(2)}" height="${(cell - 2).toFixed(2)}" fill="none" stroke="#ffe600" stroke-width="2.5"/>`);
  }
  if (captionHeight > 0) {
    parts.push(`<rect x="0" y="${display}" width="${width}" height="${captionHeight}" fill="#ffffff"/>`);
    (o.caption ?? '').split('\n').forEach((line, i) => {
      // Long class names shrink to fit the width (DejaVu Sans averages about 0.6 em per character).
      const size = Math.min(16, Math.floor((width - 16) / (0.6 * line.length)));
      parts.push(`<text x="8" y="${display + LINE * (i + 1) - 9}" font-size="${size}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">${escapeXml(line)}</text>`);
    });
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${display + captionHeight}">${parts.join('')}</svg>`;
}

/** The overlay as PNG bytes. */
export async function patchOverlayPng(o: PatchOverlay): Promise<Buffer> {
  if (o.rgb.length !== o.size * o.size * 3) throw new Error(`patchOverlayPng: ${o.rgb.length} bytes is not ${o.size}x${o.size}x3`);
  if (o.size % o.patchSize !== 0) throw new Error(`patchOverlayPng: size ${o.size} is not a multiple of patch ${o.patchSize}`);
  const display = o.display ?? Math.max(448, o.size);
  const captionHeight = o.caption ? LINE * o.caption.split('\n').length + 4 : 0;
  // Small inputs are enlarged without smoothing, so each patch stays a crisp block of pixels.
  const panel = await sharp(o.rgb, { raw: { width: o.size, height: o.size, channels: 3 } })
    .resize(display, display, { kernel: display >= 2 * o.size ? 'nearest' : 'lanczos3' })
    .png()
    .toBuffer();
  return sharp({ create: { width: 2 * display + PANEL_GAP, height: display + captionHeight, channels: 3, background: '#ffffff' } })
    .composite([
      { input: panel, top: 0, left: 0 },
      { input: panel, top: 0, left: display + PANEL_GAP },
      { input: Buffer.from(overlaySvg(o, display, captionHeight)), top: 0, left: 0 },
    ])
    .png()
    .toBuffer();
}
