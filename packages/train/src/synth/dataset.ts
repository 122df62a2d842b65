// The embedded default dataset: synthetic birds generated in memory, split into train and test.
// Image `i` of class `c` is a pure function of (seed, c, i, size); the test images of a class
// continue its train indices, so changing the test count never changes a train image.
import { type BirdClass, type BirdParts, birdClasses, generateBird } from './birds.js';

export interface SynthBirdsOptions {
  /** Seed of every image; the class table does not depend on it. */
  seed?: number; // 0
  numClasses?: number; // 24
  trainPerClass?: number; // 30
  testPerClass?: number; // 10
  /** Image side in pixels. */
  size?: number; // 64
  /** When given, each split also carries its images as normalised float CHW. */
  normalize?: Normalization;
}

/** Per-channel (R, G, B) statistics: x = (pixel / 255 - mean) / std. */
export interface Normalization {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

export interface SynthSplit {
  count: number;
  /** (N) class labels, class-major order. */
  labels: Int32Array;
  /** (N) index of each image within its class, the generator's `index`. */
  indices: Int32Array;
  /** (N, H, W, 3) 8-bit RGB. */
  rgb: Uint8Array;
  /** (N, 3, H, W) normalised, present when the options asked for it. */
  chw?: Float32Array;
  /** Where each image's parts were drawn, in pixels. */
  parts: BirdParts[];
}

export interface SynthBirds {
  /** Display names, indexed by label. */
  classes: string[];
  /** Names, prompts and part attributes, indexed by label. */
  classInfo: BirdClass[];
  superCategory: 'bird';
  size: number;
  seed: number;
  train: SynthSplit;
  test: SynthSplit;
}

export interface ResolvedSynthOptions {
  seed: number;
  numClasses: number;
  trainPerClass: number;
  testPerClass: number;
  size: number;
}

export function resolveSynthOptions(opts: SynthBirdsOptions = {}): ResolvedSynthOptions {
  const r = { seed: opts.seed ?? 0, numClasses: opts.numClasses ?? 24, trainPerClass: opts.trainPerClass ?? 30, testPerClass: opts.testPerClass ?? 10, size: opts.size ?? 64 };
  const int = (name: keyof ResolvedSynthOptions, lo: number, hi: number) => {
    const v = r[name];
    if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`synthetic birds: ${name} must be an integer in [${lo}, ${hi}], got ${v}`);
  };
  int('seed', 0, 0xffffffff);
  int('trainPerClass', 1, 1_000_000);
  int('testPerClass', 0, 1_000_000);
  int('size', 16, 512);
  return r;
}

/** Generates the whole dataset in memory (speed: `npx vitest run src/synth/speed.test.ts`). */
export function makeSynthBirds(opts: SynthBirdsOptions = {}): SynthBirds {
  const o = resolveSynthOptions(opts);
  const classInfo = birdClasses(o.numClasses);
  return {
    classes: classInfo.map((c) => c.name),
    classInfo,
    superCategory: 'bird',
    size: o.size,
    seed: o.seed,
    train: renderSynthSplit(o, classInfo, 0, o.trainPerClass, opts.normalize),
    test: renderSynthSplit(o, classInfo, o.trainPerClass, o.testPerClass, opts.normalize),
  };
}

/** `perClass` images of every class with generator indices `first`, `first + 1`, ..., class-major. */
export function renderSynthSplit(o: ResolvedSynthOptions, classInfo: readonly BirdClass[], first: number, perClass: number, normalize?: Normalization): SynthSplit {
  const count = classInfo.length * perClass;
  const px = o.size * o.size * 3;
  const labels = new Int32Array(count);
  const indices = new Int32Array(count);
  const rgb = new Uint8Array(count * px);
  const parts: BirdParts[] = [];
  let n = 0;
  for (const cls of classInfo) {
    for (let i = first; i < first + perClass; i++, n++) {
      labels[n] = cls.index;
      indices[n] = i;
      parts.push(generateBird(o.seed, cls, i, o.size, rgb.subarray(n * px, (n + 1) * px)).parts);
    }
  }
  const s: SynthSplit = { count, labels, indices, rgb, parts };
  if (normalize) s.chw = rgbToChw(rgb, o.size, normalize);
  return s;
}

/**
 * The first generator index of epoch `epoch`'s training images when every epoch draws new ones:
 * epoch 0 is the training split itself, later epochs continue after the test images, so a test
 * image is never trained on.
 */
export function freshEpochFirstIndex(o: Pick<ResolvedSynthOptions, 'trainPerClass' | 'testPerClass'>, epoch: number): number {
  return epoch === 0 ? 0 : o.trainPerClass + o.testPerClass + (epoch - 1) * o.trainPerClass;
}

/** (N, size, size, 3) 8-bit RGB to (N, 3, size, size) floats normalised by `norm`. */
export function rgbToChw(rgb: Uint8Array, size: number, norm: Normalization, out?: Float32Array): Float32Array {
  const plane = size * size;
  if (rgb.length % (plane * 3) !== 0) throw new Error(`rgbToChw: ${rgb.length} bytes is not a whole number of ${size}x${size}x3 images`);
  const dst = out ?? new Float32Array(rgb.length);
  if (dst.length !== rgb.length) throw new Error(`rgbToChw: output has ${dst.length} elements, expected ${rgb.length}`);
  const scale = norm.std.map((s) => 1 / (255 * s));
  const shift = norm.mean.map((m, c) => m / norm.std[c]!);
  for (let base = 0; base < rgb.length; base += plane * 3) {
    for (let c = 0; c < 3; c++) {
      const k = scale[c]!;
      const b = shift[c]!;
      const o = base + c * plane;
      for (let p = 0; p < plane; p++) dst[o + p] = rgb[base + p * 3 + c]! * k - b;
    }
  }
  return dst;
}
