// Procedural fine-grained "birds": every subcategory is one combination of part attributes (beak,
// eye-ring, wing bar, tail, crest); everything else — pose, size, position, body colour, lighting,
// background clutter, noise — is drawn per image independently of the class. A classifier can
// only tell the classes apart by looking at the small parts, which is what SsVP's token selection
// is meant to find.
import { Rng } from '@mpfgvc/kernels';
import { type Canvas, type Rgb, createCanvas, fillCapsule, fillEllipse, fillLinearGradient, fillPolygon, hsv, mixRgb, quantise, sampleCanvas, scaleRgb } from './raster.js';

export const BEAKS = ['short', 'long', 'curved'] as const;
export const EYE_RINGS = ['red', 'white', 'yellow'] as const;
export const WING_BARS = ['none', 'white', 'yellow'] as const;
export const TAILS = ['plain', 'banded', 'forked'] as const;

export type Beak = (typeof BEAKS)[number];
export type EyeRing = (typeof EYE_RINGS)[number];
export type WingBar = (typeof WING_BARS)[number];
export type Tail = (typeof TAILS)[number];

/** The parts a subcategory is defined by; nothing else about a bird depends on its class. */
export interface BirdAttributes {
  beak: Beak;
  eyeRing: EyeRing;
  wingBar: WingBar;
  tail: Tail;
  crest: boolean;
}

export interface BirdClass {
  /** 0-based label. */
  index: number;
  /** Readable name, e.g. `long-beak red-eyering white-wingbar forked-tail crested`. */
  name: string;
  /** CUB-style folder name, e.g. `001.long-beak_red-eyering_white-wingbar_forked-tail_crested`. */
  dirName: string;
  /** A sentence describing the parts, usable as a text prompt. */
  description: string;
  attributes: BirdAttributes;
}

/** How many distinct subcategories the attribute table allows. */
export const MAX_BIRD_CLASSES = BEAKS.length * EYE_RINGS.length * WING_BARS.length * TAILS.length * 2;

function comboAttributes(k: number): BirdAttributes {
  const crest = k % 2 === 1;
  k = Math.floor(k / 2);
  const tail = TAILS[k % TAILS.length]!;
  k = Math.floor(k / TAILS.length);
  const wingBar = WING_BARS[k % WING_BARS.length]!;
  k = Math.floor(k / WING_BARS.length);
  const eyeRing = EYE_RINGS[k % EYE_RINGS.length]!;
  k = Math.floor(k / EYE_RINGS.length);
  return { beak: BEAKS[k]!, eyeRing, wingBar, tail, crest };
}

function attributeValues(a: BirdAttributes): string[] {
  return [a.beak, a.eyeRing, a.wingBar, a.tail, String(a.crest)];
}

/** The number of parts in which two subcategories differ. */
export function partDistance(a: BirdAttributes, b: BirdAttributes): number {
  const va = attributeValues(a);
  const vb = attributeValues(b);
  let d = 0;
  for (let i = 0; i < va.length; i++) if (va[i] !== vb[i]) d++;
  return d;
}

/**
 * The first `count` subcategories of one fixed order, so that smaller tables are prefixes of larger
 * ones and names never depend on the data seed. The order is greedy farthest-point in part space:
 * each next class maximises its smallest part distance to those already taken, then prefers
 * the pairs of part values seen least so far. Balancing pairs, not just values, keeps parts from
 * being correlated (say every long beak with a white eye-ring), so no part stands in for another.
 */
export function birdClasses(count: number): BirdClass[] {
  if (!Number.isInteger(count) || count < 2 || count > MAX_BIRD_CLASSES) {
    throw new Error(`birdClasses: count must be an integer in [2, ${MAX_BIRD_CLASSES}], got ${count}`);
  }
  const all = Array.from({ length: MAX_BIRD_CLASSES }, (_, k) => comboAttributes(k));
  const taken: number[] = [0];
  const minDist = all.map((a) => partDistance(a, all[0]!));
  const usage = new Map<string, number>();
  const pairs = (a: BirdAttributes) => {
    const v = attributeValues(a);
    const keys: string[] = [];
    for (let p = 0; p < v.length; p++) for (let q = p; q < v.length; q++) keys.push(`${p}:${v[p]}|${q}:${v[q]}`);
    return keys;
  };
  const use = (a: BirdAttributes) => pairs(a).forEach((key) => usage.set(key, (usage.get(key) ?? 0) + 1));
  const cost = (a: BirdAttributes) => pairs(a).reduce((s, key) => s + (usage.get(key) ?? 0), 0);
  use(all[0]!);
  while (taken.length < count) {
    let best = -1;
    for (let k = 0; k < all.length; k++) {
      if (minDist[k] === 0) continue;
      if (best < 0 || minDist[k]! > minDist[best]! || (minDist[k] === minDist[best] && cost(all[k]!) < cost(all[best]!))) best = k;
    }
    taken.push(best);
    use(all[best]!);
    for (let k = 0; k < all.length; k++) minDist[k] = Math.min(minDist[k]!, partDistance(all[k]!, all[best]!));
  }
  return taken.map((k, index) => describeClass(index, all[k]!));
}

function describeClass(index: number, a: BirdAttributes): BirdClass {
  const name = [`${a.beak}-beak`, `${a.eyeRing}-eyering`, a.wingBar === 'none' ? 'plain-wing' : `${a.wingBar}-wingbar`, `${a.tail}-tail`, ...(a.crest ? ['crested'] : [])].join(' ');
  const beak = { short: 'a short conical beak', long: 'a long straight beak', curved: 'a long down-curved beak' }[a.beak];
  const wing = a.wingBar === 'none' ? 'plain wings' : `a ${a.wingBar} bar on each wing`;
  const tail = { plain: 'a plain tail', banded: 'a tail with pale bands', forked: 'a forked tail' }[a.tail];
  const crest = a.crest ? 'a crest on its head' : 'no crest';
  const description = `a bird with ${beak}, a ${a.eyeRing} ring around the eye, ${wing}, ${tail} and ${crest}.`;
  const dirName = `${String(index + 1).padStart(3, '0')}.${name.replaceAll(' ', '_')}`;
  return { index, name, dirName, description, attributes: a };
}

// ---------------------------------------------------------------------------------------------
// Scenes: every random draw of one image, made before the class is looked at.

interface Blob {
  x: number;
  y: number;
  rx: number;
  ry: number;
  angle: number;
  color: Rgb;
  alpha: number;
}

interface Stroke {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  r: number;
  color: Rgb;
}

/** All nuisance variables of one image; the class's attributes pick which parts get drawn. */
export interface BirdScene {
  size: number;
  /** Pixels per bird unit (the body is about 0.85 units long). */
  scale: number;
  angle: number;
  mirror: boolean;
  /** Pixel position of the bird's body centre. */
  cx: number;
  cy: number;
  body: Rgb;
  belly: Rgb;
  wing: Rgb;
  /** The beak is drawn in whichever of these stands out more from the head and background. */
  beakDark: Rgb;
  beakLight: Rgb;
  legColor: Rgb;
  /** Per-image part jitter, as factors near 1 (or offsets near 0) in bird units. */
  beakLength: number;
  beakWidth: number;
  ringWidth: number;
  ringShade: number;
  barOffset: number;
  tailLength: number;
  tailAngle: number;
  crestLength: number;
  gradient: { x0: number; y0: number; dx: number; dy: number; c0: Rgb; c1: Rgb };
  blobs: Blob[];
  branches: Stroke[];
  perch: Stroke;
  spots: Blob[];
  light: { base: number; gx: number; gy: number };
  noiseStd: number;
  noiseSeed: number;
}

const RING_COLORS: Record<EyeRing, Rgb> = { red: [0.9, 0.08, 0.06], white: [0.97, 0.97, 0.94], yellow: [1.0, 0.86, 0.08] };
const BAR_COLORS: Record<Exclude<WingBar, 'none'>, Rgb> = { white: [0.97, 0.97, 0.94], yellow: [1.0, 0.86, 0.08] };
const BAND_COLOR: Rgb = [0.93, 0.9, 0.8];
const PUPIL: Rgb = [0.03, 0.03, 0.04];
const WHITE: Rgb = [1, 1, 1];
// Small background dots in the part colours: without them "is there red anywhere" would tell the
// eye-ring apart, and the classifier would not need to find the eye.
const SPOT_COLORS: Rgb[] = [RING_COLORS.red, RING_COLORS.white, RING_COLORS.yellow, [0.1, 0.1, 0.1], [0.95, 0.5, 0.1]];

// The bird in its own frame: x forward (towards the beak), y down, body centre at the origin.
// A generous box around every part, used to keep the whole bird inside the image.
const EXTENT = { x0: -0.95, y0: -0.72, x1: 1.02, y1: 0.5 };
// Part sizes are set for the smallest images (32 px): the eye ring spans about 3 px there, the
// wing bar and the tail bands about 2. Thinner parts vanished into quantisation and noise, and a
// small ViT trained from scratch could not learn them.
const HEAD = { x: 0.4, y: -0.3, r: 0.19 };
const EYE = { x: 0.47, y: -0.33, ring: 0.14, pupil: 0.04 };
const FEET = { x: 0.07, y: 0.42 };

function u(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.next();
}

function naturalColor(rng: Rng): Rgb {
  // Foliage, sky, bark and stone: mostly muted, any hue.
  return hsv(rng.next(), u(rng, 0.1, 0.6), u(rng, 0.25, 0.9));
}

/** Draws every nuisance variable of one `size`×`size` image from `rng`, in a fixed order. */
export function sampleScene(rng: Rng, size: number): BirdScene {
  const scale = size * u(rng, 0.36, 0.5);
  const angle = u(rng, -0.4, 0.4);
  const mirror = rng.next() < 0.5;
  // Keep the transformed extent box inside the image with a 1 px margin (centre it if too big).
  const cs = Math.cos(angle);
  const sn = Math.sin(angle);
  let lox = Infinity;
  let hix = -Infinity;
  let loy = Infinity;
  let hiy = -Infinity;
  for (const [ex, ey] of [[EXTENT.x0, EXTENT.y0], [EXTENT.x1, EXTENT.y0], [EXTENT.x0, EXTENT.y1], [EXTENT.x1, EXTENT.y1]] as const) {
    const mx = mirror ? -ex : ex;
    const px = (mx * cs - ey * sn) * scale;
    const py = (mx * sn + ey * cs) * scale;
    lox = Math.min(lox, px);
    hix = Math.max(hix, px);
    loy = Math.min(loy, py);
    hiy = Math.max(hiy, py);
  }
  const place = (lo: number, hi: number) => (hi - lo > size - 2 ? (size - lo - hi) / 2 : u(rng, 1 - lo, size - 1 - hi));
  const cx = place(lox, hix);
  const cy = place(loy, hiy);

  const hue = rng.next();
  const sat = u(rng, 0.15, 0.65);
  const val = u(rng, 0.3, 0.8);
  const body = hsv(hue, sat, val);
  const belly = mixRgb(hsv(hue + u(rng, -0.08, 0.08), sat * 0.5, Math.min(1, val + 0.25)), [0.9, 0.88, 0.82], u(rng, 0, 0.6));
  const wing = scaleRgb(hsv(hue + u(rng, -0.05, 0.05), Math.min(1, sat * 1.2), val), u(rng, 0.5, 0.75));
  const beakDark = mixRgb([0.1, 0.09, 0.08], [0.45, 0.3, 0.15], rng.next());
  const beakLight = mixRgb([0.9, 0.8, 0.6], [0.97, 0.55, 0.12], rng.next());
  const legColor = scaleRgb([0.35, 0.3, 0.28], u(rng, 0.4, 1.2));

  const beakLength = u(rng, 0.9, 1.1);
  const beakWidth = u(rng, 0.85, 1.15);
  const ringWidth = u(rng, 0.9, 1.15);
  const ringShade = u(rng, 0.85, 1.0);
  const barOffset = u(rng, -0.03, 0.03);
  const tailLength = u(rng, 0.85, 1.15);
  const tailAngle = u(rng, -0.15, 0.25);
  const crestLength = u(rng, 0.85, 1.2);

  const ga = rng.next() * 2 * Math.PI;
  const gradient = {
    x0: size / 2 - (Math.cos(ga) * size) / 2,
    y0: size / 2 - (Math.sin(ga) * size) / 2,
    dx: Math.cos(ga) * size,
    dy: Math.sin(ga) * size,
    c0: naturalColor(rng),
    c1: naturalColor(rng),
  };
  const blobs: Blob[] = [];
  const nBlobs = 3 + Math.floor(rng.next() * 8);
  for (let i = 0; i < nBlobs; i++) {
    blobs.push({ x: u(rng, 0, size), y: u(rng, 0, size), rx: size * u(rng, 0.04, 0.3), ry: size * u(rng, 0.03, 0.2), angle: u(rng, 0, Math.PI), color: naturalColor(rng), alpha: u(rng, 0.3, 0.9) });
  }
  const branches: Stroke[] = [];
  const nBranches = Math.floor(rng.next() * 3);
  for (let i = 0; i < nBranches; i++) {
    const a = u(rng, 0, Math.PI);
    const x = u(rng, 0, size);
    const y = u(rng, 0, size);
    const len = size * u(rng, 0.3, 0.9);
    branches.push({ x0: x - Math.cos(a) * len, y0: y - Math.sin(a) * len, x1: x + Math.cos(a) * len, y1: y + Math.sin(a) * len, r: size * u(rng, 0.008, 0.03), color: scaleRgb([0.38, 0.28, 0.2], u(rng, 0.5, 1.3)) });
  }
  // The perch passes under the feet, roughly level whatever the bird's pose.
  const fx = cx + ((mirror ? -FEET.x : FEET.x) * cs - FEET.y * sn) * scale;
  const fy = cy + ((mirror ? -FEET.x : FEET.x) * sn + FEET.y * cs) * scale;
  const pa = u(rng, -0.35, 0.35);
  const pr = scale * u(rng, 0.04, 0.07);
  const perch = { x0: fx - Math.cos(pa) * size, y0: fy + pr - Math.sin(pa) * size, x1: fx + Math.cos(pa) * size, y1: fy + pr + Math.sin(pa) * size, r: pr, color: scaleRgb([0.4, 0.3, 0.22], u(rng, 0.6, 1.2)) };
  const spots: Blob[] = [];
  const nSpots = Math.floor(rng.next() * 6);
  for (let i = 0; i < nSpots; i++) {
    const r = scale * u(rng, 0.04, 0.1);
    spots.push({ x: u(rng, 0, size), y: u(rng, 0, size), rx: r, ry: r * u(rng, 0.7, 1), angle: u(rng, 0, Math.PI), color: SPOT_COLORS[Math.floor(rng.next() * SPOT_COLORS.length)]!, alpha: 1 });
  }
  const light = { base: u(rng, 0.75, 1.2), gx: u(rng, -0.35, 0.35), gy: u(rng, -0.35, 0.35) };
  const noiseStd = u(rng, 0, 0.04);
  const noiseSeed = rng.nextU32();
  return { size, scale, angle, mirror, cx, cy, body, belly, wing, beakDark, beakLight, legColor, beakLength, beakWidth, ringWidth, ringShade, barOffset, tailLength, tailAngle, crestLength, gradient, blobs, branches, perch, spots, light, noiseStd, noiseSeed };
}

/**
 * The option farthest (in RGB) from the canvas around (x, y) and from `also`. Shape-only parts —
 * beak, crest, forked tail — are told apart by their outline, which must not vanish into a
 * background of the same colour. The choice looks at the background only, never at the class.
 */
function standOut(cv: Canvas, x: number, y: number, options: readonly Rgb[], also: readonly Rgb[]): Rgb {
  const against = [sampleCanvas(cv, x, y, 2), ...also];
  let best = options[0]!;
  let bestD = -1;
  for (const o of options) {
    const d = Math.min(...against.map((a) => (o[0] - a[0]) ** 2 + (o[1] - a[1]) ** 2 + (o[2] - a[2]) ** 2));
    if (d > bestD) {
      best = o;
      bestD = d;
    }
  }
  return best;
}

/** Maps a point of the bird's own frame (x towards the beak, y down) to pixels in scene `s`. */
export function birdToPixel(s: BirdScene, x: number, y: number): [number, number] {
  const mx = s.mirror ? -x : x;
  const cs = Math.cos(s.angle) * s.scale;
  const sn = Math.sin(s.angle) * s.scale;
  return [s.cx + mx * cs - y * sn, s.cy + mx * sn + y * cs];
}

/** Pixel positions of the parts in a rendered image (the anchor each part is drawn around). */
export interface BirdParts {
  beakTip: [number, number];
  eye: [number, number];
  wingBar: [number, number];
  tailTip: [number, number];
  crown: [number, number];
  /** Bounding box of the bird [x0, y0, x1, y1] in pixels, clipped to the image. */
  box: [number, number, number, number];
}

export interface RenderedBird {
  /** (H, W, 3) interleaved 8-bit RGB. */
  rgb: Uint8Array;
  parts: BirdParts;
}

/** Renders the bird of class `attrs` into the scene `s`. */
export function renderBird(attrs: BirdAttributes, s: BirdScene, out?: Uint8Array): RenderedBird {
  const cv = createCanvas(s.size);
  const g = s.gradient;
  fillLinearGradient(cv, g.x0, g.y0, g.dx, g.dy, g.c0, g.c1);
  for (const b of s.blobs) fillEllipse(cv, b.x, b.y, b.rx, b.ry, b.angle, b.color, b.alpha);
  for (const b of s.branches) fillCapsule(cv, b.x0, b.y0, b.x1, b.y1, b.r, b.color);
  for (const b of s.spots) fillEllipse(cv, b.x, b.y, b.rx, b.ry, b.angle, b.color, b.alpha);
  const p = s.perch;
  fillCapsule(cv, p.x0, p.y0, p.x1, p.y1, p.r, p.color);

  const m = s.mirror ? -1 : 1;
  const pt = (x: number, y: number) => birdToPixel(s, x, y);
  const tx = (x: number, y: number) => pt(x, y)[0];
  const ty = (x: number, y: number) => pt(x, y)[1];
  const poly = (xy: readonly number[]) => {
    const out: number[] = [];
    for (let i = 0; i < xy.length; i += 2) out.push(tx(xy[i]!, xy[i + 1]!), ty(xy[i]!, xy[i + 1]!));
    return out;
  };
  // An ellipse's axis direction maps like any vector; its pixel angle follows.
  const ellipse = (x: number, y: number, rx: number, ry: number, a: number, c: Rgb) => {
    const ang = Math.atan2(m * Math.cos(a) * Math.sin(s.angle) + Math.sin(a) * Math.cos(s.angle), m * Math.cos(a) * Math.cos(s.angle) - Math.sin(a) * Math.sin(s.angle));
    fillEllipse(cv, tx(x, y), ty(x, y), rx * s.scale, ry * s.scale, ang, c);
  };
  const capsule = (x0: number, y0: number, x1: number, y1: number, r: number, c: Rgb) => fillCapsule(cv, tx(x0, y0), ty(x0, y0), tx(x1, y1), ty(x1, y1), r * s.scale, c);

  // Tail, in a frame at its root pointing backwards and a little down.
  const ta = Math.PI + 0.35 + s.tailAngle;
  const tcos = Math.cos(ta);
  const tsin = Math.sin(ta);
  const tl = 0.42 * s.tailLength;
  const tail = (xy: readonly number[]) => {
    const out: number[] = [];
    for (let i = 0; i < xy.length; i += 2) out.push(-0.3 + xy[i]! * tl * tcos - xy[i + 1]! * tsin, 0.08 + xy[i]! * tl * tsin + xy[i + 1]! * tcos);
    return poly(out);
  };
  const tailEnd = tail([0.85, 0]);
  const tailColor = standOut(cv, tailEnd[0]!, tailEnd[1]!, [s.wing, scaleRgb(s.wing, 0.55), mixRgb(s.wing, WHITE, 0.45)], []);
  if (attrs.tail === 'forked') {
    fillPolygon(cv, tail([0, -0.07, 1.05, -0.16, 0.55, 0, 1.05, 0.16, 0, 0.07]), tailColor);
  } else {
    fillPolygon(cv, tail([0, -0.07, 1, -0.12, 1, 0.12, 0, 0.07]), tailColor);
    if (attrs.tail === 'banded') {
      for (const t of [0.45, 0.78]) fillPolygon(cv, tail([t, -0.14, t + 0.165, -0.14, t + 0.165, 0.14, t, 0.14]), BAND_COLOR);
    }
  }
  capsule(0.0, 0.2, FEET.x - 0.04, FEET.y, 0.022, s.legColor);
  capsule(0.1, 0.2, FEET.x + 0.06, FEET.y, 0.022, s.legColor);

  ellipse(0, 0, 0.42, 0.27, -0.3, s.body);
  ellipse(0.06, 0.1, 0.3, 0.14, -0.35, s.belly);
  ellipse(-0.1, -0.03, 0.33, 0.15, -0.2, s.wing);
  if (attrs.wingBar !== 'none') {
    const bx = -0.06 + s.barOffset;
    capsule(bx + 0.02, -0.13, bx - 0.03, 0.07, 0.068, BAR_COLORS[attrs.wingBar]);
  }

  // The crest sits behind the head, so the head hides its base.
  if (attrs.crest) {
    const c = s.crestLength;
    const [qx, qy] = pt(HEAD.x - 0.12, HEAD.y - 0.28);
    const crestColor = standOut(cv, qx, qy, [scaleRgb(s.body, 0.55), mixRgb(s.body, WHITE, 0.5)], []);
    fillPolygon(cv, poly([HEAD.x + 0.1, HEAD.y - 0.12, HEAD.x - 0.12 - 0.18 * c, HEAD.y - 0.2 - 0.16 * c, HEAD.x - 0.1, HEAD.y - 0.05]), crestColor);
  }
  ellipse(HEAD.x, HEAD.y, HEAD.r, HEAD.r, 0, s.body);

  const bl = s.beakLength;
  const bw = s.beakWidth;
  const bx0 = HEAD.x + HEAD.r - 0.04;
  const [mx, my] = pt(bx0 + 0.25, HEAD.y + 0.04);
  const beakColor = standOut(cv, mx, my, [s.beakDark, s.beakLight], [s.body]);
  let tip: [number, number];
  if (attrs.beak === 'short') {
    tip = [bx0 + 0.19 * bl, HEAD.y + 0.01];
    fillPolygon(cv, poly([bx0, HEAD.y - 0.075 * bw, tip[0], tip[1], bx0, HEAD.y + 0.07 * bw]), beakColor);
  } else if (attrs.beak === 'long') {
    tip = [bx0 + 0.42 * bl, HEAD.y + 0.02];
    fillPolygon(cv, poly([bx0, HEAD.y - 0.045 * bw, tip[0], tip[1], bx0, HEAD.y + 0.045 * bw]), beakColor);
  } else {
    // A down-curved arc of the same length as the long beak, tapering to the tip.
    const pts: number[] = [];
    const lower: number[] = [];
    const n = 6;
    for (let i = 0; i <= n; i++) {
      const t = i / n;
      const x = bx0 + 0.36 * bl * t;
      const y = HEAD.y + 0.2 * bl * t * t;
      const w = 0.045 * bw * (1 - t) + 0.008;
      pts.push(x, y - w);
      lower.unshift(x, y + w);
    }
    fillPolygon(cv, poly([...pts, ...lower]), beakColor);
    tip = [bx0 + 0.36 * bl, HEAD.y + 0.2 * bl];
  }

  const ringColor = scaleRgb(RING_COLORS[attrs.eyeRing], s.ringShade);
  ellipse(EYE.x, EYE.y, EYE.ring * s.ringWidth, EYE.ring * s.ringWidth, 0, ringColor);
  ellipse(EYE.x, EYE.y, EYE.pupil, EYE.pupil, 0, PUPIL);

  const rgb = quantise(cv, s.light.base, s.light.gx, s.light.gy, s.noiseStd, s.noiseSeed, out);
  const corners = [pt(EXTENT.x0, EXTENT.y0), pt(EXTENT.x1, EXTENT.y0), pt(EXTENT.x0, EXTENT.y1), pt(EXTENT.x1, EXTENT.y1)];
  const clip = (v: number) => Math.min(s.size, Math.max(0, v));
  const box: [number, number, number, number] = [
    clip(Math.min(...corners.map((c) => c[0]))),
    clip(Math.min(...corners.map((c) => c[1]))),
    clip(Math.max(...corners.map((c) => c[0]))),
    clip(Math.max(...corners.map((c) => c[1]))),
  ];
  const parts: BirdParts = {
    beakTip: pt(tip[0], tip[1]),
    eye: pt(EYE.x, EYE.y),
    wingBar: pt(-0.065 + s.barOffset, -0.03),
    tailTip: pt(-0.3 + tl * tcos, 0.08 + tl * tsin),
    crown: pt(HEAD.x - 0.05, HEAD.y - HEAD.r),
    box,
  };
  return { rgb, parts };
}

/** Mixes (seed, class, index) into the 32-bit seed of one image's generator. */
export function imageSeed(seed: number, label: number, index: number): number {
  let h = 0x811c9dc5;
  for (const v of [seed >>> 0, label >>> 0, index >>> 0]) {
    h = Math.imul(h ^ v, 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    h = (h ^ (h >>> 12)) >>> 0;
  }
  return h;
}

/** The `index`-th image of class `cls` for `seed`: the same arguments always give the same bytes. */
export function generateBird(seed: number, cls: BirdClass, index: number, size: number, out?: Uint8Array): RenderedBird {
  const scene = sampleScene(new Rng(imageSeed(seed, cls.index, index)), size);
  return renderBird(cls.attributes, scene, out);
}
