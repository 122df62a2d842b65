// A trained MP-FGVC model as a library object: classify, explain and embed images. Nothing here
// touches a file or a platform's image decoder; how an input becomes the S×S RGB crop the network
// sees is given by the platform's entry (node.ts: files and buffers through sharp; browser.ts:
// anything a canvas draws), so Node and a page run the same code from the crop on.
import { type Device, type Tensor, keep, noGrad, scope, tensor } from '@mpfgvc/kernels';
import { type Head, MPFGVC, WeightsError } from '@mpfgvc/model';
import { CLIP_NORMALIZATION, IMAGENET_NORMALIZATION, type Rgb, normalizeInto } from '../images/normalize.js';
import { EVAL_CROP_RATIO } from '../images/transforms.js';

/** Pixels in memory, as an `ImageData` holds them: RGBA (4 channels) or RGB (3), row-major, 8 bits. */
export interface RawImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** Default: data.length / (width · height). */
  channels?: 3 | 4;
}

/** The evaluation crop of an input: the shorter side resized to floor(S / cropRatio), a centred S×S crop. */
export type PrepareImage<I> = (input: I, size: number, cropRatio: number) => Promise<Uint8Array>;

export class ClassifierError extends Error {
  override name = 'ClassifierError';
}

export interface ClassifierOptions {
  /** Display names by label (default: the model file's, else "class i"). */
  classes?: string[];
  /** Input normalisation (default: the model file's, else CLIP's for a CLIP vision tower, else ImageNet's). */
  normalization?: { mean: Rgb; std: Rgb };
  /** Evaluation crop (default: the model file's, else EVAL_CROP_RATIO, 0.875). */
  cropRatio?: number;
  /** Images per forward pass (default 8). */
  batch?: number;
}

export interface Ranked {
  class: number;
  name: string;
  p: number;
}

export interface Classification {
  /** The shipped prediction, best first: the ensemble's, or the vision head's for a ViT-only model. */
  top: Ranked[];
  /** Each head's best classes (vision, text, vlfm, ensemble: those the model has). */
  heads: Partial<Record<Head, Ranked[]>>;
  /** Each head's probabilities over all classes. */
  probs: Partial<Record<Head, number[]>>;
  /** SsVP's kept patch ids (row-major on the patch grid), when the model has SsVP. */
  selected?: number[];
}

export interface Explanation extends Classification {
  /** The crop the network saw: (size, size, 3) RGB. */
  crop: Uint8Array;
  size: number;
  patchSize: number;
}

/** Softmax of one row (float64). */
export function softmaxRow(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** The k most probable classes, ties to the lower index. */
export function topK(probs: readonly number[], k: number): { index: number; p: number }[] {
  return probs
    .map((p, index) => ({ index, p }))
    .sort((a, b) => b.p - a.p || a.index - b.index)
    .slice(0, k);
}

/** RGBA or RGB pixels as RGB. */
export function rgbOf(image: RawImage): Uint8Array {
  const n = image.width * image.height;
  const channels = image.channels ?? image.data.length / n;
  if (!Number.isInteger(n) || n <= 0) throw new ClassifierError(`image: width ${image.width} and height ${image.height} must be positive integers`);
  if ((channels !== 3 && channels !== 4) || image.data.length !== n * channels) {
    throw new ClassifierError(`image: ${image.data.length} bytes for ${image.width}×${image.height} pixels: expected RGB (${3 * n}) or RGBA (${4 * n})`);
  }
  if (channels === 3) return new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  const rgb = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = image.data[4 * i + c]!;
  return rgb;
}

export class Classifier<I = RawImage> {
  readonly classes: string[];
  readonly normalization: { mean: Rgb; std: Rgb };
  readonly cropRatio: number;
  readonly batch: number;
  /** Where the model came from (its file, URL or name). */
  readonly source: string;
  private readonly onDispose: () => void;
  private text: Tensor | undefined;
  private disposed = false;

  constructor(
    readonly model: MPFGVC,
    private readonly prepare: PrepareImage<I>,
    opts: ClassifierOptions = {},
    owner: { source?: string; onDispose?: () => void } = {},
  ) {
    this.source = owner.source ?? 'model.safetensors';
    this.onDispose = owner.onDispose ?? (() => {});
    const info = model.info;
    const C = model.config.numClasses;
    this.classes = opts.classes ?? info.classes ?? Array.from({ length: C }, (_, c) => `class ${c}`);
    if (this.classes.length !== C) throw new ClassifierError(`classes: ${this.classes.length} names for a model of ${C} classes`);
    this.normalization = opts.normalization ?? info.normalization ?? (model.config.vision.preNorm ? CLIP_NORMALIZATION : IMAGENET_NORMALIZATION);
    this.cropRatio = opts.cropRatio ?? info.cropRatio ?? EVAL_CROP_RATIO;
    this.batch = opts.batch ?? 8;
    const size = model.config.vision.imageSize ** 2 * 3 * 4 * this.batch;
    if (size > model.device.limits.maxStorageBufferBindingSize) throw new ClassifierError(`a batch of ${this.batch} images needs ${size} bytes, beyond this adapter's storage binding limit; use a smaller batch`);
  }

  /** The model's file, bytes as `mpfgvc train` writes it, on a device. */
  static fromBytes<I>(device: Device, bytes: Uint8Array, source: string, prepare: PrepareImage<I>, opts: ClassifierOptions = {}, onDispose?: () => void): Classifier<I> {
    let model: MPFGVC;
    try {
      model = MPFGVC.load(device, bytes, source);
    } catch (e) {
      if (e instanceof WeightsError || e instanceof SyntaxError) throw new ClassifierError(`checkpoint ${source}: ${e.message.replace(`${source}: `, '')}`);
      throw e;
    }
    try {
      return new Classifier(model, prepare, opts, { source, ...(onDispose ? { onDispose } : {}) });
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  get imageSize(): number {
    return this.model.config.vision.imageSize;
  }

  get heads(): readonly Head[] {
    return this.model.heads;
  }

  /** The input as the network sees it: the evaluation crop (S, S, 3) and its normalised (3, S, S) floats. */
  async crop(input: I): Promise<{ rgb: Uint8Array; chw: Float32Array }> {
    const S = this.imageSize;
    const rgb = await this.prepare(input, S, this.cropRatio);
    const chw = new Float32Array(3 * S * S);
    normalizeInto(rgb, S, false, this.normalization.mean, this.normalization.std, chw, 0);
    return { rgb, chw };
  }

  /** Every head's probabilities and the top `topK` classes for each input, `batch` per forward pass. */
  async classify(inputs: readonly I[], opts: { topK?: number } = {}): Promise<Classification[]> {
    const out: Classification[] = [];
    // A batch's crops at a time: a long list never holds more than one batch of pixels.
    for (let b = 0; b < inputs.length; b += this.batch) {
      const crops = [];
      for (const input of inputs.slice(b, b + this.batch)) crops.push(await this.crop(input));
      out.push(...(await this.classifyCrops(crops, opts.topK ?? 5, b)));
    }
    return out;
  }

  /** One input's classification with the crop and SsVP's kept patches, to draw them over it. */
  async explain(input: I, opts: { topK?: number } = {}): Promise<Explanation> {
    if (!(this.model.config.selectK > 0)) throw new ClassifierError('the model has no SsVP (selectK 0): nothing to explain');
    const crop = await this.crop(input);
    const [c] = await this.classifyCrops([crop], opts.topK ?? 5);
    return { ...c!, crop: crop.rgb, size: this.imageSize, patchSize: this.model.config.vision.patchSize };
  }

  /** V = P_v E_V for each input: the joint image embedding the text heads compare with classEmbeddings(). */
  async embed(inputs: readonly I[]): Promise<Float32Array[]> {
    this.check();
    const S = this.imageSize;
    const out: Float32Array[] = [];
    for (let b = 0; b < inputs.length; b += this.batch) {
      const chunk = [];
      for (const input of inputs.slice(b, b + this.batch)) chunk.push(await this.crop(input));
      const x = this.batchTensor(chunk.map((c) => c.chw));
      const joint = noGrad(() => scope(() => this.model.encodeImages(x).joint));
      const data = (await joint.read()) as Float32Array;
      const D = joint.shape[1]!;
      for (let i = 0; i < chunk.length; i++) out.push(data.slice(i * D, (i + 1) * D));
      x.dispose();
      joint.dispose();
    }
    return out;
  }

  /** T: each class's text embedding (of its DaTP or fixed prompt), row c for class c. */
  async classEmbeddings(): Promise<Float32Array[]> {
    const T = this.textFeatures();
    if (!T) throw new ClassifierError('the model is ViT-only: it has no text tower');
    const data = (await T.read()) as Float32Array;
    const D = T.shape[1]!;
    return Array.from({ length: T.shape[0]! }, (_, c) => data.slice(c * D, (c + 1) * D));
  }

  /** Frees the model's GPU memory (and the device, when the classifier opened it). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.text?.dispose();
    this.model.dispose();
    this.onDispose();
  }

  /**
   * Classifications of crops already prepared at the model's input size. Messages name a crop by
   * its `name` when it has one (a file path), else by its position counted from `first`.
   */
  async classifyCrops(crops: readonly { chw: Float32Array; name?: string }[], k: number, first = 0): Promise<Classification[]> {
    this.check();
    const C = this.model.config.numClasses;
    const text = this.textFeatures();
    const results: Classification[] = [];
    for (let b = 0; b < crops.length; b += this.batch) {
      const chunk = crops.slice(b, b + this.batch);
      const x = this.batchTensor(chunk.map((c) => c.chw));
      const out = this.model.predict(x, text);
      const values = await Promise.all(this.heads.map(async (h) => out[h]!.read()));
      const selected = out.selected ? await out.selected.read() : undefined;
      const K = out.selected?.shape[1] ?? 0;
      for (const t of [x, out.vision, out.text, out.vlfm, out.ensemble, out.selected]) t?.dispose();
      chunk.forEach((crop, i) => {
        const probs: Partial<Record<Head, number[]>> = {};
        const heads: Partial<Record<Head, Ranked[]>> = {};
        this.heads.forEach((h, j) => {
          const row = values[j]!.subarray(i * C, (i + 1) * C);
          // The ensemble is already a probability; the other heads are logits.
          const p = h === 'ensemble' ? Array.from(row) : softmaxRow(row);
          // A probability that is not a number is never returned as a result.
          if (p.some((v) => !Number.isFinite(v))) throw new ClassifierError(`the ${h} head gave non-finite outputs for ${crop.name ?? `input ${first + b + i + 1}`}; the model's weights or inputs are damaged`);
          probs[h] = p;
          heads[h] = topK(p, Math.min(k, C)).map(({ index, p }) => ({ class: index, name: this.classes[index]!, p }));
        });
        const result: Classification = { top: (heads.ensemble ?? heads.vision)!, heads, probs };
        if (selected) result.selected = Array.from(selected.subarray(i * K, (i + 1) * K));
        results.push(result);
      });
    }
    return results;
  }

  private textFeatures(): Tensor | undefined {
    if (this.model.visionOnly) return undefined;
    // T is a constant of the trained model: computed once.
    this.text ??= keep(noGrad(() => this.model.textFeatures()));
    return this.text;
  }

  private batchTensor(chws: Float32Array[]): Tensor {
    const S = this.imageSize;
    const x = new Float32Array(chws.length * 3 * S * S);
    chws.forEach((c, i) => x.set(c, i * 3 * S * S));
    return tensor(this.model.device, x, [chws.length, 3, S, S]);
  }

  private check(): void {
    if (this.disposed) throw new ClassifierError('the classifier was disposed');
  }
}
