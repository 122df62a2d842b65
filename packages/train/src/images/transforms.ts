// The geometry of the evaluation and training crops, as torchvision computes it: pure functions
// of the image size and an Rng, so the tests can check them by hand and a worker computes exactly
// what the main thread would.
import type { Rng } from '@mpfgvc/kernels';

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Python's round(): halves go to the even neighbour (torchvision's center crop uses it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The evaluation crop's share of the shorter side (torchvision's 224 of 256). */
export const EVAL_CROP_RATIO = 0.875;

/**
 * Evaluation geometry: resize so the shorter side is floor(size / cropRatio) (torchvision's
 * Resize(int): the longer side truncated), then a centred size x size crop (CenterCrop).
 */
export function centerCropPlan(width: number, height: number, size: number, cropRatio: number): { resizeWidth: number; resizeHeight: number; crop: Box } {
  if (!(cropRatio > 0 && cropRatio <= 1)) throw new Error(`centerCropPlan: cropRatio must be in (0, 1], got ${cropRatio}`);
  const short = Math.floor(size / cropRatio);
  const [resizeWidth, resizeHeight] = width <= height ? [short, Math.floor((short * height) / width)] : [Math.floor((short * width) / height), short];
  const crop = { left: roundHalfEven((resizeWidth - size) / 2), top: roundHalfEven((resizeHeight - size) / 2), width: size, height: size };
  return { resizeWidth, resizeHeight, crop };
}

export interface RandomResizedCropOptions {
  /** Range of the crop's area as a fraction of the image's; torchvision's default (0.08, 1). */
  scale: [number, number];
  /** Range of the crop's width / height; sampled log-uniformly; default (3/4, 4/3). */
  ratio: [number, number];
}

export const DEFAULT_RRC: RandomResizedCropOptions = { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] };

/**
 * torchvision's RandomResizedCrop.get_params: ten tries at a box of random area and aspect
 * ratio that fits; otherwise the whole image cropped centrally to the nearest allowed ratio.
 */
export function randomResizedCropBox(width: number, height: number, rng: Rng, opts: RandomResizedCropOptions = DEFAULT_RRC): Box {
  const area = width * height;
  const [s0, s1] = opts.scale;
  const [logR0, logR1] = [Math.log(opts.ratio[0]), Math.log(opts.ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (s0 + (s1 - s0) * rng.next());
    const aspect = Math.exp(logR0 + (logR1 - logR0) * rng.next());
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(rng.next() * (height - h + 1));
      const left = Math.floor(rng.next() * (width - w + 1));
      return { left, top, width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...opts.ratio)) h = roundHalfEven(w / Math.min(...opts.ratio));
  else if (inRatio > Math.max(...opts.ratio)) w = roundHalfEven(h * Math.max(...opts.ratio));
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}
