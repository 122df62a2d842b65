// A tiny software rasteriser for the synthetic birds: filled shapes given by signed distance
// functions in pixel units, antialiased by coverage = clamp(0.5 - distance) at each pixel centre.
// That is one distance evaluation per pixel instead of supersampling, and it stays exact enough
// for the 1-3 px parts (eye-rings, wing bars) that the fine-grained classes differ in.

/** RGB in [0, 1]. */
export type Rgb = readonly [number, number, number];

/** A square float RGB image, (H, W, 3) interleaved, values in [0, 1]. */
export interface Canvas {
  readonly size: number;
  readonly rgb: Float32Array;
}

export function createCanvas(size: number): Canvas {
  return { size, rgb: new Float32Array(size * size * 3) };
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

function blend(rgb: Float32Array, i: number, c: Rgb, a: number): void {
  rgb[i]! += (c[0] - rgb[i]!) * a;
  rgb[i + 1]! += (c[1] - rgb[i + 1]!) * a;
  rgb[i + 2]! += (c[2] - rgb[i + 2]!) * a;
}

/** Pixel rows/columns a shape with the given extent can touch, clipped to the canvas. */
function bounds(size: number, x0: number, y0: number, x1: number, y1: number): [number, number, number, number] {
  return [Math.max(0, Math.floor(x0 - 1)), Math.max(0, Math.floor(y0 - 1)), Math.min(size - 1, Math.ceil(x1 + 1)), Math.min(size - 1, Math.ceil(y1 + 1))];
}

/** Fills the canvas with a linear gradient from c0 at p0 to c1 at p0 + (dx, dy). */
export function fillLinearGradient(cv: Canvas, x0: number, y0: number, dx: number, dy: number, c0: Rgb, c1: Rgb): void {
  const { size, rgb } = cv;
  const inv = 1 / (dx * dx + dy * dy);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const t = clamp01(((x + 0.5 - x0) * dx + (y + 0.5 - y0) * dy) * inv);
      const i = (y * size + x) * 3;
      rgb[i] = c0[0] + (c1[0] - c0[0]) * t;
      rgb[i + 1] = c0[1] + (c1[1] - c0[1]) * t;
      rgb[i + 2] = c0[2] + (c1[2] - c0[2]) * t;
    }
  }
}

/** An ellipse with semi-axes rx, ry, its rx axis at `angle` radians from +x. */
export function fillEllipse(cv: Canvas, cx: number, cy: number, rx: number, ry: number, angle: number, c: Rgb, alpha = 1): void {
  const { size, rgb } = cv;
  const r = Math.max(rx, ry);
  const [xa, ya, xb, yb] = bounds(size, cx - r, cy - r, cx + r, cy + r);
  const cs = Math.cos(angle);
  const sn = Math.sin(angle);
  const irx = 1 / rx;
  const iry = 1 / ry;
  const inner = Math.min(rx, ry);
  for (let y = ya; y <= yb; y++) {
    for (let x = xa; x <= xb; x++) {
      const px = x + 0.5 - cx;
      const py = y + 0.5 - cy;
      const qu = (px * cs + py * sn) * irx;
      const qv = (py * cs - px * sn) * iry;
      const k = Math.sqrt(qu * qu + qv * qv);
      // First-order distance to the boundary: (k - 1) / |grad k|, exact on circles.
      const g = Math.sqrt(qu * qu * irx * irx + qv * qv * iry * iry);
      const d = k > 1e-6 ? ((k - 1) * k) / g : -inner;
      const a = clamp01(0.5 - d) * alpha;
      if (a > 0) blend(rgb, (y * size + x) * 3, c, a);
    }
  }
}

/** A segment from (x0, y0) to (x1, y1) with round caps, `r` px from its axis. */
export function fillCapsule(cv: Canvas, x0: number, y0: number, x1: number, y1: number, r: number, c: Rgb, alpha = 1): void {
  const { size, rgb } = cv;
  const [xa, ya, xb, yb] = bounds(size, Math.min(x0, x1) - r, Math.min(y0, y1) - r, Math.max(x0, x1) + r, Math.max(y0, y1) + r);
  const bx = x1 - x0;
  const by = y1 - y0;
  const ib = 1 / Math.max(1e-12, bx * bx + by * by);
  for (let y = ya; y <= yb; y++) {
    for (let x = xa; x <= xb; x++) {
      const px = x + 0.5 - x0;
      const py = y + 0.5 - y0;
      const h = clamp01((px * bx + py * by) * ib);
      const ex = px - bx * h;
      const ey = py - by * h;
      const a = clamp01(0.5 - (Math.sqrt(ex * ex + ey * ey) - r)) * alpha;
      if (a > 0) blend(rgb, (y * size + x) * 3, c, a);
    }
  }
}

/**
 * A simple polygon (convex or not, either winding), points flat [x0, y0, x1, y1, ...]. The exact
 * signed distance (nearest edge, sign by crossings) keeps thin tips such as a long beak from
 * growing the 0.5/sin(angle) halo that a max-of-half-planes distance would give them.
 */
export function fillPolygon(cv: Canvas, pts: readonly number[], c: Rgb, alpha = 1): void {
  const { size, rgb } = cv;
  const n = pts.length / 2;
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (let i = 0; i < n; i++) {
    minX = Math.min(minX, pts[2 * i]!);
    maxX = Math.max(maxX, pts[2 * i]!);
    minY = Math.min(minY, pts[2 * i + 1]!);
    maxY = Math.max(maxY, pts[2 * i + 1]!);
  }
  const [xa, ya, xb, yb] = bounds(size, minX, minY, maxX, maxY);
  for (let y = ya; y <= yb; y++) {
    const py = y + 0.5;
    for (let x = xa; x <= xb; x++) {
      const px = x + 0.5;
      let d2 = Infinity;
      let inside = false;
      for (let i = 0, j = n - 1; i < n; j = i++) {
        const vix = pts[2 * i]!;
        const viy = pts[2 * i + 1]!;
        const ex = pts[2 * j]! - vix;
        const ey = pts[2 * j + 1]! - viy;
        const wx = px - vix;
        const wy = py - viy;
        const h = clamp01((wx * ex + wy * ey) / (ex * ex + ey * ey));
        const bx = wx - ex * h;
        const by = wy - ey * h;
        d2 = Math.min(d2, bx * bx + by * by);
        const up = py >= viy;
        const down = py < pts[2 * j + 1]!;
        const left = ex * wy > ey * wx;
        if ((up && down && left) || (!up && !down && !left)) inside = !inside;
      }
      const d = inside ? -Math.sqrt(d2) : Math.sqrt(d2);
      const a = clamp01(0.5 - d) * alpha;
      if (a > 0) blend(rgb, (y * size + x) * 3, c, a);
    }
  }
}

/** The mean colour of the (2r+1)² pixels around (x, y), clipped to the canvas. */
export function sampleCanvas(cv: Canvas, x: number, y: number, r = 1): Rgb {
  const { size, rgb } = cv;
  const cx = Math.floor(x);
  const cy = Math.floor(y);
  let n = 0;
  const sum = [0, 0, 0];
  for (let yy = Math.max(0, cy - r); yy <= Math.min(size - 1, cy + r); yy++) {
    for (let xx = Math.max(0, cx - r); xx <= Math.min(size - 1, cx + r); xx++) {
      const i = (yy * size + xx) * 3;
      for (let c = 0; c < 3; c++) sum[c]! += rgb[i + c]!;
      n++;
    }
  }
  return n === 0 ? [0, 0, 0] : [sum[0]! / n, sum[1]! / n, sum[2]! / n];
}

/** HSV (h in turns, s and v in [0, 1]) to RGB. */
export function hsv(h: number, s: number, v: number): Rgb {
  const hh = (((h % 1) + 1) % 1) * 6;
  const i = Math.floor(hh);
  const f = hh - i;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  switch (i) {
    case 0:
      return [v, t, p];
    case 1:
      return [q, v, p];
    case 2:
      return [p, v, t];
    case 3:
      return [p, q, v];
    case 4:
      return [t, p, v];
    default:
      return [v, p, q];
  }
}

export function scaleRgb(c: Rgb, k: number): Rgb {
  return [clamp01(c[0] * k), clamp01(c[1] * k), clamp01(c[2] * k)];
}

export function mixRgb(a: Rgb, b: Rgb, t: number): Rgb {
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

/**
 * Quantises to 8-bit RGB under a linear lighting ramp (gain = base + gx*x + gy*y, x and y in
 * [-0.5, 0.5] of the image) plus sensor-like noise of the given standard deviation. The noise
 * comes from an inline xorshift seeded by `noiseSeed`: a call into the seeded Rng per channel
 * would cost more than all the shapes together.
 */
export function quantise(cv: Canvas, base: number, gx: number, gy: number, noiseStd: number, noiseSeed: number, out?: Uint8Array): Uint8Array {
  const { size, rgb } = cv;
  const dst = out ?? new Uint8Array(size * size * 3);
  let s = noiseSeed | 0 || 0x2545f491;
  // The sum of two uniforms in [-1, 1) has variance 2/3: scale it to the requested std in 0..255.
  const k = noiseStd * 255 * Math.sqrt(1.5) * (1 / 2147483648);
  const inv = 1 / size;
  for (let y = 0; y < size; y++) {
    const gyy = base + gy * ((y + 0.5) * inv - 0.5);
    for (let x = 0; x < size; x++) {
      const gain = 255 * (gyy + gx * ((x + 0.5) * inv - 0.5));
      const i = (y * size + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        const u1 = s;
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        const v = rgb[i + ch]! * gain + (u1 + s) * k + 0.5;
        dst[i + ch] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return dst;
}
