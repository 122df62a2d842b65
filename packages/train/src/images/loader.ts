// Batches of prepared images for training and evaluation, made off the main thread: a pool of
// worker_threads each preparing whole batches, up to `prefetch` batches in flight ahead of the
// one being consumed, delivered in order. Sharp's own work runs on libuv's thread pool (4 threads
// unless UV_THREADPOOL_SIZE says otherwise); the workers add the JavaScript side (normalisation
// and layout) in parallel.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Sample } from '../datasets/dataset.js';
import { type EpochPosition, EpochOrder } from './epoch-order.js';
import { type BatchImages, type BatchTask, type ImageConfig, UnreadableImageError, prepareBatch } from './preprocess.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker.js';
import { realFolder } from '../safe-files.js';

/** A worker's failure as an error of the same name (UnsafePathError stays one), its stack kept for debugging. */
function workerError(e: { name: string; message: string; stack?: string }): Error {
  const err = new Error(e.name === 'Error' ? `ImageLoader: worker failed: ${e.message}` : e.message);
  err.name = e.name;
  if (e.stack) err.stack = e.stack;
  return err;
}

export interface LoaderOptions {
  samples: readonly Sample[];
  image: ImageConfig;
  batchSize: number;
  /** Seeds the epoch order and every sample's augmentation. */
  seed: number;
  /** Default: shuffle when image.train. */
  shuffle?: boolean;
  /** Default false. */
  dropLast?: boolean;
  /** Worker threads; 0 prepares on the main thread (sharp still runs on libuv's pool). */
  workers?: number;
  /** Batches prepared ahead of the one being consumed; default max(2, workers). */
  prefetch?: number;
  /** An unreadable image aborts the run instead of being skipped. */
  strict?: boolean;
  /**
   * The folder every sample must lie in (Dataset.imageRoot): a file that resolves outside it,
   * symlinks included, stops the loader with UnsafePathError.
   */
  root?: string;
  /**
   * The worker entry; default: see defaultWorkerUrl. Tests that run this module from TypeScript
   * source pass a bundle of worker.ts (see loader.test.ts).
   */
  workerUrl?: URL;
}

export interface Batch {
  /** Position of the batch's first sample, and the position to resume from after it. */
  position: EpochPosition;
  next: EpochPosition;
  /** Readable images of the batch: (size, 3, S, S). */
  images: Float32Array;
  labels: Int32Array;
  /** Dataset indices of the images. */
  indices: Int32Array;
  size: number;
  /** Files of this batch that could not be read (not in images). */
  skipped: string[];
}

export class ImageLoader {
  readonly order: EpochOrder;
  /** Every file skipped so far, with the decoder's message. */
  readonly skipped = new Map<string, string>();
  /** Files skipped so far, each counted once however many epochs met it. */
  get skipCount(): number {
    return this.skipped.size;
  }
  private readonly samples: readonly Sample[];
  private readonly image: ImageConfig;
  private readonly seed: number;
  private readonly strict: boolean;
  private readonly prefetch: number;
  private readonly pool: WorkerPool | undefined;
  private readonly root: string | undefined;

  constructor(opts: LoaderOptions) {
    this.samples = opts.samples;
    this.image = opts.image;
    this.seed = opts.seed;
    this.strict = opts.strict ?? false;
    this.root = opts.root === undefined ? undefined : realFolder(opts.root);
    this.order = new EpochOrder(opts.samples.length, opts.batchSize, { seed: opts.seed, shuffle: opts.shuffle ?? opts.image.train, dropLast: opts.dropLast ?? false });
    const workers = opts.workers ?? Math.max(1, Math.min(8, availableParallelism() - 1));
    if (!Number.isInteger(workers) || workers < 0) throw new Error(`ImageLoader: workers must be a non-negative integer, got ${workers}`);
    this.prefetch = opts.prefetch ?? Math.max(2, workers);
    if (!Number.isInteger(this.prefetch) || this.prefetch < 1) throw new Error(`ImageLoader: prefetch must be a positive integer, got ${this.prefetch}`);
    if (workers > 0) this.pool = new WorkerPool(workers, opts.workerUrl ?? defaultWorkerUrl(), { config: opts.image, strict: this.strict });
  }

  /** The batches of one epoch, from `startIndex` on (a resumed run passes its saved index). */
  epoch(epoch: number, startIndex = 0): AsyncGenerator<Batch> {
    return this.batches({ epoch, index: startIndex }, epoch + 1);
  }

  /**
   * Batches from `from` to the start of epoch `untilEpoch`, prefetching across epoch ends. The
   * consumer may stop early; batches already being prepared are then dropped.
   */
  async *batches(from: EpochPosition, untilEpoch: number): AsyncGenerator<Batch> {
    const plan = this.order.batches(from, untilEpoch);
    const owner = {};
    const pending: { position: EpochPosition; next: EpochPosition; ids: Uint32Array; result: Promise<BatchImages> }[] = [];
    const fill = () => {
      while (pending.length < this.prefetch) {
        const step = plan.next();
        if (step.done) return;
        const { position, next, ids } = step.value;
        const task: BatchTask = { seed: this.seed, epoch: position.epoch, indices: Array.from(ids), paths: Array.from(ids, (i) => this.samples[i]!.path), ...(this.root ? { root: this.root } : {}) };
        const result = this.pool ? this.pool.run(task, owner) : prepareBatch(this.image, task, this.strict);
        // Rejections are observed when the batch's turn comes, or dropped if the consumer stops.
        result.catch(() => undefined);
        pending.push({ position, next, ids, result });
      }
    };
    try {
      fill();
      while (pending.length > 0) {
        const head = pending.shift()!;
        fill();
        const { images, kept, skipped } = await head.result;
        for (const s of skipped) this.skipped.set(s.path, s.reason);
        const indices = Int32Array.from(kept, (k) => head.ids[k]!);
        yield {
          position: head.position,
          next: head.next,
          images,
          labels: Int32Array.from(indices, (i) => this.samples[i]!.label),
          indices,
          size: kept.length,
          skipped: skipped.map((s) => s.path),
        };
      }
    } finally {
      this.pool?.cancel(owner);
    }
  }

  /** Stops the workers; batches still being prepared are rejected. */
  async close(): Promise<void> {
    await this.pool?.close();
  }
}

/**
 * dist/images/worker.js: beside this module when it runs from dist/, and through the package's
 * './worker' export when an application bundles this module into its own file (the CLI does),
 * where no sibling worker.js exists; esbuild leaves import.meta.resolve to run time.
 */
function defaultWorkerUrl(): URL {
  const sibling = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  try {
    return new URL(import.meta.resolve('@mpfgvc/train/worker'));
  } catch {
    return sibling;
  }
}

interface Job {
  id: number;
  owner: object;
  task: BatchTask;
  resolve: (r: BatchImages) => void;
  reject: (e: Error) => void;
}

class WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly queue: Job[] = [];
  private readonly running = new Map<Worker, Job>();
  private readonly workers: Worker[] = [];
  private nextId = 0;
  private failure: Error | undefined;

  constructor(n: number, url: URL, init: WorkerInit) {
    if (url.protocol === 'file:' && !existsSync(fileURLToPath(url))) {
      throw new Error(`ImageLoader: worker entry ${fileURLToPath(url)} not found; build @mpfgvc/train (npx tsc -b) or pass workerUrl, or use workers: 0`);
    }
    for (let i = 0; i < n; i++) {
      const w = new Worker(url, { workerData: init });
      // Idle workers must not keep the process alive when a caller forgets close().
      w.unref();
      w.on('message', (reply: WorkerReply) => this.onReply(w, reply));
      w.on('error', (e) => this.fail(new Error(`ImageLoader: worker crashed: ${e.stack ?? e.message}`)));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`ImageLoader: worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  run(task: BatchTask, owner: object): Promise<BatchImages> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, owner, task, resolve, reject });
      this.dispatch();
    });
  }

  /** Forgets the queued jobs of `owner` (a consumer that stopped early); running ones finish. */
  cancel(owner: object): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i]!.owner === owner) this.queue.splice(i, 1)[0]!.reject(new Error('ImageLoader: cancelled'));
    }
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.running.set(w, job);
      w.ref();
      w.postMessage({ id: job.id, task: job.task } satisfies WorkerRequest);
    }
  }

  private onReply(w: Worker, reply: WorkerReply): void {
    const job = this.running.get(w);
    if (!job || job.id !== reply.id) return;
    this.running.delete(w);
    w.unref();
    this.idle.push(w);
    if ('result' in reply) job.resolve(reply.result);
    else if ('unreadable' in reply) job.reject(new UnreadableImageError(reply.unreadable.path, reply.unreadable.reason));
    else job.reject(workerError(reply.error));
    this.dispatch();
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    for (const job of [...this.running.values(), ...this.queue]) job.reject(e);
    this.running.clear();
    this.queue.length = 0;
  }

  async close(): Promise<void> {
    this.fail(new Error('ImageLoader: closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
