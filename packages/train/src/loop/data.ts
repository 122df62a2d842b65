// The data a run trains and evaluates on, behind one interface: the synthetic birds held in memory
// (already normalised CHW floats) or a dataset on disk read through the image loader. Both visit
// the training set in the same seeded order per epoch (EpochOrder), so a position saved in a
// checkpoint means the same batches for either.
import { type Dataset, type Sample } from '../datasets/dataset.js';
import { openDataset } from '../datasets/open.js';
import { type EpochPosition, EpochOrder } from '../images/epoch-order.js';
import { ImageLoader } from '../images/loader.js';
import { type InputNormalization, normalizationStats } from '../images/normalize.js';
import { imageConfig } from '../images/preprocess.js';
import { orderRng, sampleRng } from '../images/streams.js';
import { freshEpochFirstIndex, makeSynthBirds, renderSynthSplit, resolveSynthOptions } from '../synth/dataset.js';
import type { DataConfig } from './config.js';

export interface DataBatch {
  /** (size, rowSize) rows: images (3·S·S) or cached embeddings. */
  rows: Float32Array;
  labels: Int32Array;
  /** Dataset indices of the rows. */
  indices: Int32Array;
  size: number;
  position: EpochPosition;
  next: EpochPosition;
}

export interface RunData {
  classes: string[];
  superCategory: string;
  trainCount: number;
  testCount: number;
  /** Validation images (0: the run has no validation split). */
  valCount: number;
  /** Training batches (full batches only) from `from` to the start of epoch `untilEpoch`. */
  train(batchSize: number, augment: boolean, from: EpochPosition, untilEpoch: number): AsyncGenerator<DataBatch>;
  /** Every training image once, in dataset order, without augmentation. */
  trainPlain(batchSize: number): AsyncGenerator<DataBatch>;
  test(batchSize: number): AsyncGenerator<DataBatch>;
  val(batchSize: number): AsyncGenerator<DataBatch>;
  /** Unreadable files met so far: path -> reason. */
  readonly skipped: Map<string, string>;
  /** Unreadable files met so far, each counted once (the size of `skipped`). */
  readonly skipCount: number;
  close(): Promise<void>;
}

export interface OpenDataOptions {
  imageSize: number;
  normalization: InputNormalization;
  seed: number;
  strict: boolean;
  /** The image worker's entry (tests running from TypeScript source bundle their own). */
  workerUrl?: URL;
}

/** The training order of a run: shuffled per epoch by the seed, incomplete last batch dropped. */
export function trainOrder(count: number, batchSize: number, seed: number): EpochOrder {
  return new EpochOrder(count, batchSize, { seed, shuffle: true, dropLast: true });
}

/**
 * Batches gathered from rows held in memory; `flip` mirrors image rows (3, S, S) left-right by each
 * sample's augmentation stream, as the loader's random flip does.
 */
export async function* memoryBatches(
  order: EpochOrder,
  from: EpochPosition,
  untilEpoch: number,
  source: { rows: Float32Array; rowSize: number; labels: Int32Array; present?: Uint8Array },
  flip?: { seed: number; size: number },
): AsyncGenerator<DataBatch> {
  const { rows, rowSize, labels, present } = source;
  for (const { position, next, ids } of order.batches(from, untilEpoch)) {
    const kept = present ? ids.filter((i) => present[i] === 1) : ids;
    const out = new Float32Array(kept.length * rowSize);
    kept.forEach((id, k) => {
      const src = rows.subarray(id * rowSize, (id + 1) * rowSize);
      if (flip && sampleRng(flip.seed, position.epoch, id).next() < 0.5) mirrorInto(src, flip.size, out, k * rowSize);
      else out.set(src, k * rowSize);
    });
    yield { rows: out, labels: Int32Array.from(kept, (i) => labels[i]!), indices: Int32Array.from(kept), size: kept.length, position, next };
  }
}

function mirrorInto(src: Float32Array, size: number, out: Float32Array, offset: number): void {
  for (let r = 0; r < src.length; r += size) {
    for (let x = 0; x < size; x++) out[offset + r + x] = src[r + size - 1 - x]!;
  }
}

function synthData(cfg: Extract<DataConfig, { kind: 'synth' }>, opts: OpenDataOptions): RunData {
  const norm = normalizationStats(opts.normalization);
  const synthOpts = resolveSynthOptions({ seed: cfg.seed, numClasses: cfg.numClasses, trainPerClass: cfg.trainPerClass, testPerClass: cfg.testPerClass, size: opts.imageSize });
  const ds = makeSynthBirds({ ...synthOpts, normalize: norm });
  const rowSize = 3 * opts.imageSize * opts.imageSize;
  const train = { rows: ds.train.chw!, rowSize, labels: ds.train.labels };
  const epochRows = (epoch: number) => {
    if (!cfg.fresh || epoch === 0) return train;
    const split = renderSynthSplit(synthOpts, ds.classInfo, freshEpochFirstIndex(cfg, epoch), cfg.trainPerClass, norm);
    return { rows: split.chw!, rowSize, labels: split.labels };
  };
  async function* trainBatches(b: number, augment: boolean, from: EpochPosition, until: number): AsyncGenerator<DataBatch> {
    const order = trainOrder(ds.train.count, b, opts.seed);
    for (let epoch = from.epoch; epoch < until; epoch++) {
      const start = epoch === from.epoch ? from : { epoch, index: 0 };
      yield* memoryBatches(order, start, epoch + 1, epochRows(epoch), augment ? { seed: opts.seed, size: opts.imageSize } : undefined);
    }
  }
  const test = { rows: ds.test.chw!, rowSize, labels: ds.test.labels };
  // Validation birds from another seed: the same species, images neither split has.
  const valSplit = renderSynthSplit({ ...synthOpts, seed: (synthOpts.seed + VAL_SEED_OFFSET) >>> 0 }, ds.classInfo, 0, cfg.valPerClass, norm);
  const val = { rows: valSplit.chw!, rowSize, labels: valSplit.labels };
  const inOrder = (n: number, b: number) => new EpochOrder(n, b, { seed: opts.seed, shuffle: false });
  return {
    classes: ds.classes,
    superCategory: ds.superCategory,
    trainCount: ds.train.count,
    testCount: ds.test.count,
    valCount: valSplit.count,
    train: trainBatches,
    trainPlain: (b) => memoryBatches(inOrder(ds.train.count, b), { epoch: 0, index: 0 }, 1, train),
    test: (b) => memoryBatches(inOrder(ds.test.count, b), { epoch: 0, index: 0 }, 1, test),
    val: (b) => memoryBatches(inOrder(valSplit.count, b), { epoch: 0, index: 0 }, 1, val),
    skipped: new Map(),
    skipCount: 0,
    close: async () => undefined,
  };
}

function folderData(cfg: Extract<DataConfig, { kind: 'folder' }>, opts: OpenDataOptions): RunData {
  const ds: Dataset = openDataset(cfg.format, cfg.root, cfg.superCategory === undefined ? {} : { superCategory: cfg.superCategory });
  const norm = normalizationStats(opts.normalization);
  const loaders = new Set<ImageLoader>();
  const { train, val } = holdOut(ds.train, cfg.valFraction, opts.seed);
  const data: RunData = {
    classes: ds.classes,
    superCategory: ds.superCategory,
    trainCount: train.length,
    testCount: ds.test.length,
    valCount: val.length,
    train: (b, augment, from, until) => run(train, b, augment, true, from, until),
    trainPlain: (b) => run(train, b, false, false, { epoch: 0, index: 0 }, 1),
    test: (b) => run(ds.test, b, false, false, { epoch: 0, index: 0 }, 1),
    val: (b) => run(val, b, false, false, { epoch: 0, index: 0 }, 1),
    skipped: new Map(),
    get skipCount() {
      return this.skipped.size;
    },
    close: async () => {
      await Promise.all([...loaders].map((l) => l.close()));
    },
  };
  async function* run(samples: Sample[], batchSize: number, augment: boolean, shuffle: boolean, from: EpochPosition, until: number): AsyncGenerator<DataBatch> {
    const loader = new ImageLoader({
      samples,
      image: imageConfig({ size: opts.imageSize, train: augment, mean: norm.mean, std: norm.std, scale: cfg.cropScale }),
      batchSize,
      seed: opts.seed,
      shuffle,
      dropLast: shuffle,
      workers: cfg.workers,
      strict: opts.strict,
      root: ds.imageRoot,
      ...(opts.workerUrl ? { workerUrl: opts.workerUrl } : {}),
    });
    loaders.add(loader);
    try {
      for await (const batch of loader.batches(from, until)) {
        for (const path of batch.skipped) data.skipped.set(path, loader.skipped.get(path) ?? 'unreadable');
        yield { rows: batch.images, labels: batch.labels, indices: batch.indices, size: batch.size, position: batch.position, next: batch.next };
      }
    } finally {
      loaders.delete(loader);
      await loader.close();
    }
  }
  return data;
}

/** Synthetic validation birds are drawn with the data seed plus this. */
const VAL_SEED_OFFSET = 0x5eed;

/**
 * Holds out `fraction` of each class's training samples (at least one of a class with two or
 * more, none of a class with one), chosen by the run's seed; both lists keep the dataset's order.
 */
export function holdOut(samples: readonly Sample[], fraction: number, seed: number): { train: Sample[]; val: Sample[] } {
  if (fraction <= 0) return { train: [...samples], val: [] };
  const byClass = new Map<number, number[]>();
  samples.forEach((s, i) => byClass.set(s.label, [...(byClass.get(s.label) ?? []), i]));
  const held = new Set<number>();
  for (const [label, ids] of byClass) {
    const n = ids.length < 2 ? 0 : Math.max(1, Math.round(fraction * ids.length));
    const rng = orderRng((seed ^ VAL_SEED_OFFSET) >>> 0, label);
    // A seeded partial Fisher-Yates: the first n of the class's shuffled indices are held out.
    const order = [...ids];
    for (let k = 0; k < n; k++) {
      const j = k + Math.floor(rng.next() * (order.length - k));
      [order[k], order[j]] = [order[j]!, order[k]!];
      held.add(order[k]!);
    }
  }
  return { train: samples.filter((_, i) => !held.has(i)), val: samples.filter((_, i) => held.has(i)) };
}

export function openRunData(cfg: DataConfig, opts: OpenDataOptions): RunData {
  return cfg.kind === 'synth' ? synthData(cfg, opts) : folderData(cfg, opts);
}
