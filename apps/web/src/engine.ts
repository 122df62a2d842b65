// What the page does with the engine, without the page: open the adapter, load a model file,
// prepare an image, classify and explain it, and train the synthetic-birds demo in the tab. The
// same functions back the UI (app.ts) and the browser tests (window.mpfgvc).
import { AdamW, type Device, Rng, backward, clipGradNorm, keep, noGrad, requestDevice, scope, selfCheck, tensor } from '@mpfgvc/kernels';
import { DEMO_MODEL, HEADS, type Head, MPFGVC, type MPFGVCConfig } from '@mpfgvc/model';
import {
  type BrowserImage,
  Classifier,
  ClassifierError,
  EVAL_CROP_RATIO,
  EpochOrder,
  type EvalResult,
  IMAGENET_NORMALIZATION,
  type Ranked,
  browserCrop,
  evaluate,
  freshEpochFirstIndex,
  learningRate,
  makeSynthBirds,
  normalizeInto,
  renderSynthSplit,
  resolveSynthOptions,
  sampleRng,
} from '@mpfgvc/train/browser';

/** Where WebGPU is: what the page says when a browser has none. */
export const WEBGPU_HELP =
  'This page needs WebGPU: Chrome or Edge 113+ (Android 121+), Safari 26+, or Firefox 141+ on Windows. ' +
  'On Linux, start Chromium with --enable-unsafe-webgpu (and --enable-features=Vulkan on a GPU).';

export class PageError extends Error {
  override name = 'PageError';
}

/** The adapter, with a clear message where the browser has none. */
export async function openDevice(): Promise<Device> {
  if (!('gpu' in navigator) || !navigator.gpu) throw new PageError(`WebGPU is not available in this browser. ${WEBGPU_HELP}`);
  try {
    return await requestDevice();
  } catch (e) {
    throw new PageError(`no WebGPU adapter: ${(e as Error).message}. ${WEBGPU_HELP}`);
  }
}

export function adapterName(dev: Device): string {
  const i = dev.info;
  // Vendor, architecture and description often repeat one another ('google', 'swiftshader', 'google').
  const words = [i.vendor, i.architecture, i.description || i.name].join(' ').split(/\s+/).filter(Boolean);
  return words.filter((w, k) => words.findIndex((v) => v.toLowerCase() === w.toLowerCase()) === k).join(' ') || 'WebGPU adapter';
}

export { selfCheck };

/** A model file on the device, as the library's classifier (the API `mpfgvc predict` uses in Node). */
export type LoadedModel = Classifier<BrowserImage>;

/** A model file's bytes (what `mpfgvc train` and `demo` write, or this page's training) on the device. */
export function loadModel(dev: Device, bytes: Uint8Array, source: string): LoadedModel {
  try {
    return Classifier.fromBytes(dev, bytes, source, browserCrop, { batch: 1 });
  } catch (e) {
    if (e instanceof ClassifierError) throw new PageError(`${e.message} — expected a model.safetensors written by mpfgvc train or demo`);
    throw e;
  }
}

export function disposeModel(m: LoadedModel | undefined): void {
  m?.dispose();
}

/** An image as the network sees it: the crop (S, S, 3) RGB and its normalised CHW floats. */
export interface PreparedImage {
  rgb: Uint8Array;
  chw: Float32Array;
}

/** An RGB crop at the model's size, normalised as the model's file says. */
export function prepareRgb(rgb: Uint8Array, m: LoadedModel): PreparedImage {
  const S = m.imageSize;
  const chw = new Float32Array(3 * S * S);
  normalizeInto(rgb, S, false, m.normalization.mean, m.normalization.std, chw, 0);
  return { rgb, chw };
}

/**
 * Evaluation preprocessing in the page: the shorter side resized to floor(S / cropRatio) and a
 * centred S×S crop, as `mpfgvc predict` does (the library's browser crop).
 */
export async function prepareImage(source: ImageBitmapSource, m: LoadedModel): Promise<PreparedImage> {
  return m.crop(source);
}

export interface Classification {
  /** Per head of the model, the top classes by probability. */
  heads: { head: Head; top: Ranked[] }[];
  /** Each head's probabilities over the classes. */
  probs: Partial<Record<Head, number[]>>;
  /** SsVP's kept patch ids. */
  selected?: number[];
  ms: number;
}

/** Every head's top-k for one prepared image. */
export async function classify(m: LoadedModel, image: PreparedImage, topK = 5): Promise<Classification> {
  const t0 = performance.now();
  const [c] = await m.classifyCrops([image], topK);
  const ms = performance.now() - t0;
  return { heads: m.heads.map((head) => ({ head, top: c!.heads[head]! })), probs: c!.probs, ...(c!.selected ? { selected: c!.selected } : {}), ms };
}

/**
 * The crop with SsVP's dropped patches dimmed and the kept ones outlined, beside the plain crop,
 * as `mpfgvc explain` draws it; `display` is each panel's side in pixels.
 */
export function drawExplanation(canvas: HTMLCanvasElement | OffscreenCanvas, m: LoadedModel, image: PreparedImage, selected: readonly number[], display = 256): void {
  const S = m.model.config.vision.imageSize;
  const P = m.model.config.vision.patchSize;
  const gap = 12;
  canvas.width = 2 * display + gap;
  canvas.height = display;
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;
  const src = new OffscreenCanvas(S, S);
  const sctx = src.getContext('2d')!;
  const rgba = new Uint8ClampedArray(S * S * 4);
  for (let i = 0; i < S * S; i++) {
    for (let c = 0; c < 3; c++) rgba[4 * i + c] = image.rgb[3 * i + c]!;
    rgba[4 * i + 3] = 255;
  }
  sctx.putImageData(new ImageData(rgba, S, S), 0, 0);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  // Small inputs are enlarged without smoothing: each patch stays a crisp block.
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(src, 0, 0, display, display);
  ctx.drawImage(src, display + gap, 0, display, display);
  const grid = S / P;
  const cell = display / grid;
  const keep = new Set(selected);
  for (let id = 0; id < grid * grid; id++) {
    const x = display + gap + (id % grid) * cell;
    const y = Math.floor(id / grid) * cell;
    if (keep.has(id)) {
      ctx.strokeStyle = '#ffe600';
      ctx.lineWidth = 2.5;
      ctx.strokeRect(x + 1, y + 1, cell - 2, cell - 2);
    } else {
      ctx.fillStyle = 'rgba(0, 0, 0, 0.45)';
      ctx.fillRect(x, y, cell, cell);
    }
  }
}

// ---- Training the demo in the tab ----

export interface TabTrainOptions {
  numClasses: number;
  /** New training images per class every epoch. */
  perClass: number;
  testPerClass: number;
  epochs: [number, number];
  batch: number;
  seed: number;
}

/** Small enough to train in a couple of minutes on a software adapter, large enough to leave chance. */
export const TAB_DEMO: TabTrainOptions = { numClasses: 8, perClass: 64, testPerClass: 16, epochs: [6, 3], batch: 32, seed: 0 };

export interface TrainProgress {
  stage: 1 | 2;
  epoch: number;
  step: number;
  steps: number;
  loss: number;
  imagesPerSec: number;
  /** After each stage's last epoch. */
  eval?: EvalResult;
}

export interface TabTrainResult {
  loaded: LoadedModel;
  history: TrainProgress[];
  stages: { stage: 1 | 2; seconds: number; eval: EvalResult }[];
  imagesPerSec: number;
}

/**
 * The demo's MP-FGVC trained from scratch in the tab on newly generated synthetic birds every
 * epoch, both stages, as the Node trainer does (AdamW, cosine schedule with a warm-up epoch,
 * clipping at 1); resolves to the trained model, loaded for classification. Stops at the next step
 * once `signal` aborts (the promise then rejects with an AbortError).
 */
export async function trainInTab(dev: Device, opts: TabTrainOptions, onProgress: (p: TrainProgress) => void, signal?: AbortSignal): Promise<TabTrainResult> {
  const S = DEMO_MODEL.vision.imageSize;
  const synth = resolveSynthOptions({ numClasses: opts.numClasses, trainPerClass: opts.perClass, testPerClass: opts.testPerClass, size: S, seed: opts.seed });
  const norm = IMAGENET_NORMALIZATION;
  const base = makeSynthBirds({ ...synth, normalize: norm });
  const config: MPFGVCConfig = { ...DEMO_MODEL, numClasses: opts.numClasses, superCategory: 'bird' };
  const model = new MPFGVC(dev, new Rng(opts.seed), config, { classIds: [0], sot: 1, eot: 2 });
  model.info = { classes: base.classes, normalization: norm, cropRatio: EVAL_CROP_RATIO, dataset: 'synthetic birds, trained in the browser' };
  const rowSize = 3 * S * S;
  const history: TrainProgress[] = [];
  const stages: TabTrainResult['stages'] = [];
  let images = 0;
  const started = performance.now();
  const testBatches = async function* (b: number) {
    for (let i = 0; i < base.test.count; i += b) {
      const n = Math.min(b, base.test.count - i);
      yield { rows: base.test.chw!.subarray(i * rowSize, (i + n) * rowSize), labels: base.test.labels.subarray(i, i + n), indices: new Int32Array(n), size: n, position: { epoch: 0, index: i }, next: { epoch: 0, index: i + n } };
    }
  };
  try {
    for (const stage of [1, 2] as const) {
      const epochs = opts.epochs[stage - 1]!;
      if (epochs === 0) continue;
      const stageStart = performance.now();
      model.setStage(stage);
      const params = model.trainable(stage);
      const opt = new AdamW(params, { lr: stage === 1 ? 2e-3 : 3e-3, weightDecay: 0.05 });
      const text = stage === 2 ? keep(noGrad(() => model.textFeatures())) : undefined;
      const order = new EpochOrder(base.train.count, opts.batch, { seed: opts.seed, shuffle: true, dropLast: true });
      const perEpoch = order.batchesPerEpoch;
      const total = epochs * perEpoch;
      const schedule = { base: stage === 1 ? 2e-3 : 3e-3, minLr: 1e-5, total, warmup: Math.min(total, perEpoch) };
      let step = 0;
      try {
        for (let epoch = 0; epoch < epochs; epoch++) {
          // New birds every epoch after the first (stage 2 keeps the first epoch's).
          const split = epoch === 0 || stage === 2 ? base.train : renderSynthSplit(synth, base.classInfo, freshEpochFirstIndex(synth, epoch), synth.trainPerClass, norm);
          for (const { ids } of order.batches({ epoch, index: 0 }, epoch + 1)) {
            if (signal?.aborted) throw new DOMException('training cancelled', 'AbortError');
            const t0 = performance.now();
            const rows = new Float32Array(ids.length * rowSize);
            ids.forEach((id, k) => {
              const src = split.chw!.subarray(id * rowSize, (id + 1) * rowSize);
              // The random horizontal flip of the Node trainer's in-memory batches.
              if (sampleRng(opts.seed, epoch, id).next() < 0.5) for (let r = 0; r < rowSize; r += S) for (let x = 0; x < S; x++) rows[k * rowSize + r + x] = src[r + S - 1 - x]!;
              else rows.set(src, k * rowSize);
            });
            const labels = Int32Array.from(ids, (i) => split.labels[i]!);
            opt.lr = learningRate(schedule, step);
            const loss = scope(() => {
              const x = tensor(dev, rows, [ids.length, 3, S, S]);
              const l = stage === 1 ? model.stageOne(x, labels).loss : model.stageTwo(x, labels, text!).loss;
              backward(l);
              clipGradNorm(params, 1).dispose();
              opt.step();
              opt.zeroGrad();
              return keep(l);
            });
            const value = (await loss.read())[0]!;
            loss.dispose();
            step++;
            images += ids.length;
            const p: TrainProgress = { stage, epoch, step, steps: total, loss: value, imagesPerSec: ids.length / ((performance.now() - t0) / 1000) };
            history.push(p);
            onProgress(p);
          }
        }
        const result = await evaluate(model, testBatches(64), text);
        const last = history[history.length - 1]!;
        const p = { ...last, eval: result };
        history[history.length - 1] = p;
        onProgress(p);
        stages.push({ stage, seconds: (performance.now() - stageStart) / 1000, eval: result });
      } finally {
        opt.dispose();
        text?.dispose();
      }
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  const loaded = loadModel(dev, await model.save(), 'trained in this tab');
  model.dispose();
  return { loaded, history, stages, imagesPerSec: images / ((performance.now() - started) / 1000) };
}

export const ALL_HEADS = HEADS;
