// One image from file to the network's input: decode, crop and resize (training: random resized
// crop + horizontal flip; evaluation: resize + center crop), normalise, lay out as CHW float32.
// The same functions run in the loader's workers and, with `workers: 0`, on the main thread.
import sharp, { type Sharp } from 'sharp';
import { insideFolderAsync, readRegularFileAsync } from '../safe-files.js';
import { type RgbImage, decodeRgb } from './decode.js';
import { IMAGENET_NORMALIZATION, type Rgb, normalizeInto } from './normalize.js';
import { sampleRng } from './streams.js';
import { type Box, DEFAULT_RRC, EVAL_CROP_RATIO, centerCropPlan, randomResizedCropBox } from './transforms.js';

export interface ImageConfig {
  /** Output side S: images are (3, S, S). */
  size: number;
  /** Random resized crop + flip when true; resize + center crop when false. */
  train: boolean;
  /** Per-channel mean and std of pixel values in [0, 1]. */
  mean: Rgb;
  std: Rgb;
  /** Random resized crop: area fraction and aspect ratio ranges. */
  scale: [number, number];
  ratio: [number, number];
  /** Probability of a horizontal flip in training. */
  flipProbability: number;
  /** Evaluation: the shorter side is resized to floor(size / cropRatio) before the crop. */
  cropRatio: number;
  /** Resampling filter: bilinear as torchvision's default, bicubic as CLIP's preprocessing. */
  interpolation: 'bilinear' | 'bicubic';
}

export function imageConfig(opts: Partial<ImageConfig> & { size: number; train: boolean }): ImageConfig {
  const cfg: ImageConfig = {
    ...IMAGENET_NORMALIZATION,
    scale: DEFAULT_RRC.scale,
    ratio: DEFAULT_RRC.ratio,
    flipProbability: 0.5,
    cropRatio: EVAL_CROP_RATIO,
    interpolation: 'bilinear',
    ...opts,
  };
  if (!Number.isInteger(cfg.size) || cfg.size < 1) throw new Error(`imageConfig: size must be a positive integer, got ${cfg.size}`);
  if (!(cfg.scale[0] > 0 && cfg.scale[0] <= cfg.scale[1] && cfg.scale[1] <= 1)) throw new Error(`imageConfig: scale must satisfy 0 < lo <= hi <= 1, got [${cfg.scale}]`);
  if (!(cfg.ratio[0] > 0 && cfg.ratio[0] <= cfg.ratio[1])) throw new Error(`imageConfig: ratio must satisfy 0 < lo <= hi, got [${cfg.ratio}]`);
  if (cfg.std.some((s) => !(s > 0))) throw new Error(`imageConfig: std must be positive, got [${cfg.std}]`);
  return cfg;
}


/** Crops and resizes a decoded image and writes it normalised into out[offset..]. */
export async function transformInto(img: RgbImage, cfg: ImageConfig, seed: number, epoch: number, index: number, out: Float32Array, offset: number): Promise<void> {
  const kernel = cfg.interpolation === 'bicubic' ? 'cubic' : 'linear';
  const raw = { raw: { width: img.width, height: img.height, channels: 3 as const } };
  let pipeline: Sharp;
  let flip = false;
  if (cfg.train) {
    const rng = sampleRng(seed, epoch, index);
    const box: Box = randomResizedCropBox(img.width, img.height, rng, { scale: cfg.scale, ratio: cfg.ratio });
    flip = rng.next() < cfg.flipProbability;
    pipeline = sharp(img.data, raw).extract(box).resize(cfg.size, cfg.size, { fit: 'fill', kernel });
  } else {
    const plan = centerCropPlan(img.width, img.height, cfg.size, cfg.cropRatio);
    pipeline = sharp(img.data, raw).resize(plan.resizeWidth, plan.resizeHeight, { fit: 'fill', kernel }).extract(plan.crop);
  }
  const pixels = await pipeline.raw().toBuffer();
  normalizeInto(pixels, cfg.size, flip, cfg.mean, cfg.std, out, offset);
}

/** Image files larger than this are refused unread (a 448-px JPEG is ~100 kB; the largest camera RAW-like TIFFs ~200 MB). */
export const MAX_IMAGE_BYTES = 512 * 1024 * 1024;

/**
 * Decodes an image file, which must be a regular file (a FIFO or a device is refused without
 * blocking) and, when `root` is given, lie inside it after symlinks are resolved. A file outside
 * throws UnsafePathError; an unreadable one throws with the decoder's message.
 */
export async function readImage(path: string, root?: string): Promise<RgbImage> {
  if (root !== undefined) await insideFolderAsync(root, path, 'image');
  return decodeRgb(await readRegularFileAsync(path, { what: 'image', maxBytes: MAX_IMAGE_BYTES }));
}

/** One image as a fresh (3, S, S) array. */
export async function prepareImage(path: string, cfg: ImageConfig, seed: number, epoch: number, index: number): Promise<Float32Array> {
  const out = new Float32Array(3 * cfg.size * cfg.size);
  await transformInto(await readImage(path), cfg, seed, epoch, index, out, 0);
  return out;
}

export interface BatchTask {
  seed: number;
  epoch: number;
  /** Dataset sample indices (they seed the augmentation) and their files. */
  indices: number[];
  paths: string[];
  /** The real path of the folder every file must lie in (symlinks resolved); unchecked when absent. */
  root?: string;
}

export interface BatchImages {
  /** (kept, 3, S, S): the readable images, in task order. */
  images: Float32Array;
  /** Positions in the task of the images kept. */
  kept: number[];
  /** Files that could not be read, with the decoder's message. */
  skipped: { path: string; reason: string }[];
}

export class UnreadableImageError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`image pipeline: cannot read ${path}: ${reason}`);
  }
}

/**
 * The images of a batch; unreadable ones are skipped and reported, or fatal when `strict`. Up to
 * `concurrency` images are in progress at once, so one image's decode and resize (on libuv's
 * threads) overlap another's normalisation (on this thread).
 */
export async function prepareBatch(cfg: ImageConfig, task: BatchTask, strict: boolean, concurrency = 2): Promise<BatchImages> {
  const n = task.paths.length;
  const per = 3 * cfg.size * cfg.size;
  const images = new Float32Array(n * per);
  const ok = new Array<boolean>(n).fill(false);
  const failures: ({ path: string; reason: string } | undefined)[] = new Array(n).fill(undefined);
  let nextItem = 0;
  const lane = async () => {
    while (nextItem < n) {
      const i = nextItem++;
      const path = task.paths[i]!;
      let img: RgbImage;
      try {
        img = await readImage(path, task.root);
      } catch (e) {
        // A file outside the dataset folder stops the run: it is an attack or a broken list, not a bad image.
        if ((e as Error).name === 'UnsafePathError') throw e;
        const reason = (e as Error).message.split('\n')[0]!;
        if (strict) throw new UnreadableImageError(path, reason);
        failures[i] = { path, reason };
        continue;
      }
      await transformInto(img, cfg, task.seed, task.epoch, task.indices[i]!, images, i * per);
      ok[i] = true;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, lane));
  const kept: number[] = [];
  for (let i = 0; i < n; i++) {
    if (!ok[i]) continue;
    // Close the gaps left by skipped images (rare: moves within the buffer, no new one).
    if (kept.length !== i) images.copyWithin(kept.length * per, i * per, (i + 1) * per);
    kept.push(i);
  }
  const skipped = failures.filter((f) => f !== undefined);
  // A view of the filled part: the buffer is transferred whole.
  return { images: kept.length === n ? images : new Float32Array(images.buffer, 0, kept.length * per), kept, skipped };
}
