// What the page does with the engine, without the page: open the adapter, load a model file,
// prepare an image, classify and explain it, and train the synthetic-birds demo in the tab. The
// same functions back the UI (app.ts) and the browser tests (window.mpfgvc).
import { AdamW, type Device, Rng, type Tensor, backward, clipGradNorm, keep, noGrad, requestDevice, scope, selfCheck, tensor } from '@mpfgvc/kernels';
import { DEMO_MODEL, HEADS, type Head, MPFGVC, type MPFGVCConfig, WeightsError } from '@mpfgvc/model';
import {
  EpochOrder,
  type EvalResult,
  IMAGENET_NORMALIZATION,
  type Rgb,
  centerCropPlan,
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

export interface LoadedModel {
  model: MPFGVC;
  /** File name or URL, for the page. */
  source: string;
  classes: string[];
  mean: Rgb;
  std: Rgb;
  cropRatio: number;
  /** T of the text heads, computed once (none for a ViT-only model). */
  text: Tensor | undefined;
}

/** A model file's bytes (what `mpfgvc train` and `demo` write, or this page's training) on the device. */
export function loadModel(dev: Device, bytes: Uint8Array, source: string): LoadedModel {
  let model: MPFGVC;
  try {
    model = MPFGVC.load(dev, bytes, source);
  } catch (e) {
    if (e instanceof WeightsError) throw new PageError(`${e.message.startsWith(source) ? '' : `${source}: `}${e.message} — expected a model.safetensors written by mpfgvc train or demo`);
    throw e;
  }
  const size = model.config.vision.imageSize * model.config.vision.imageSize * 3 * 4;
  if (size > dev.limits.maxStorageBufferBindingSize) throw new PageError(`${source}: one input image needs ${size} bytes, beyond this adapter's storage binding limit`);
  const info = model.info;
  const norm = info.normalization ?? (model.config.vision.preNorm ? { mean: [0.48145466, 0.4578275, 0.40821073] as Rgb, std: [0.26862954, 0.26130258, 0.27577711] as Rgb } : IMAGENET_NORMALIZATION);
  return {
    model,
    source,
    classes: info.classes ?? Array.from({ length: model.config.numClasses }, (_, c) => `class ${c}`),
    mean: norm.mean as Rgb,
    std: norm.std as Rgb,
    cropRatio: info.cropRatio ?? 0.875,
    text: model.visionOnly ? undefined : keep(noGrad(() => model.textFeatures())),
  };
}

export function disposeModel(m: LoadedModel | undefined): void {
  m?.text?.dispose();
  m?.model.dispose();
}

/** An image as the network sees it: the crop (S, S, 3) RGB and its normalised CHW floats. */
export interface PreparedImage {
  rgb: Uint8Array;
  chw: Float32Array;
}

/** RGB crop → normalised CHW, as the Node pipeline normalises. */
export function prepareRgb(rgb: Uint8Array, size: number, mean: Rgb, std: Rgb): PreparedImage {
  const chw = new Float32Array(3 * size * size);
  normalizeInto(rgb, size, false, mean, std, chw, 0);
  return { rgb, chw };
}

/**
 * Evaluation preprocessing in the page: the shorter side resized to floor(S / cropRatio) and a
 * centred S×S crop, as `mpfgvc predict` does (the canvas's smoothing stands in for sharp's
 * bilinear filter, so pixels can differ by a level or two).
 */
export async function prepareImage(source: ImageBitmapSource, m: LoadedModel): Promise<PreparedImage> {
  const S = m.model.config.vision.imageSize;
  const bitmap = await createImageBitmap(source);
  const plan = centerCropPlan(bitmap.width, bitmap.height, S, m.cropRatio);
  const canvas = new OffscreenCanvas(S, S);
  const ctx = canvas.getContext('2d')!;
  ctx.imageSmoothingQuality = 'high';
  // Resize to the plan's size, then take the crop: one drawImage with the source rectangle scaled back.
  const sx = plan.crop.left * (bitmap.width / plan.resizeWidth);
  const sy = plan.crop.top * (bitmap.height / plan.resizeHeight);
  const sw = S * (bitmap.width / plan.resizeWidth);
  const sh = S * (bitmap.height / plan.resizeHeight);
  ctx.drawImage(bitmap, sx, sy, sw, sh, 0, 0, S, S);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, S, S).data;
  const rgb = new Uint8Array(S * S * 3);
  for (let i = 0; i < S * S; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = rgba[4 * i + c]!;
  return prepareRgb(rgb, S, m.mean, m.std);
}

export interface Ranked {
  index: number;
  name: string;
  p: number;
}

export interface Classification {
  /** Per head of the model, the top classes by probability. */
  heads: { head: Head; top: Ranked[] }[];
  /** Raw outputs per head (logits; the ensemble's are probabilities). */
  logits: Partial<Record<Head, Float32Array>>;
  /** SsVP's kept patch ids. */
  selected?: number[];
  ms: number;
}

function softmax(x: Float32Array): number[] {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  const e = Array.from(x, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Every head's top-k for one prepared image. */
export async function classify(m: LoadedModel, image: PreparedImage, topK = 5): Promise<Classification> {
  const S = m.model.config.vision.imageSize;
  const t0 = performance.now();
  const out = scope(() => m.model.predict(tensor(m.model.device, image.chw, [1, 3, S, S]), m.text));
  const logits: Partial<Record<Head, Float32Array>> = {};
  for (const h of m.model.heads) logits[h] = (await out[h]!.read()) as Float32Array;
  const selected = out.selected ? Array.from(await out.selected.read()) : undefined;
  for (const t of [out.vision, out.text, out.vlfm, out.ensemble, out.selected]) t?.dispose();
  const ms = performance.now() - t0;
  const heads = m.model.heads.map((head) => {
    const probs = head === 'ensemble' ? Array.from(logits[head]!) : softmax(logits[head]!);
    if (probs.some((p) => !Number.isFinite(p))) throw new PageError(`the ${head} head gave non-finite outputs: the model file is damaged`);
    const top = probs
      .map((p, index) => ({ index, name: m.classes[index]!, p }))
      .sort((a, b) => b.p - a.p || a.index - b.index)
      .slice(0, topK);
    return { head, top };
  });
  return { heads, logits, ...(selected ? { selected } : {}), ms };
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
  model.info = { classes: base.classes, normalization: norm, cropRatio: 0.875, dataset: 'synthetic birds, trained in the browser' };
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
      const epochs = opts.epochs[stage - 1];
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
