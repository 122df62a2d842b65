// What the stages of one training run share: its configuration, data, model, metrics log and hooks;
// where the run stands (its step, the checkpoint in force, the best validation result); and what
// every stage does with them: evaluate and record the row, write a checkpoint, watch for unreadable
// images, stop when asked.
import { join } from 'node:path';
import type { AdamW, Device, SGD, Tensor } from '@mpfgvc/kernels';
import { type MPFGVC, type Stage, parseWith } from '@mpfgvc/model';
import { z } from 'zod';
import { WriteError, writeFileAtomic } from '../atomic.js';
import { type CheckpointRecord, type LoadedCheckpoint, type RunPosition, CHECKPOINT_FILE, CheckpointError, serializeOptimizer, writeCheckpoint } from '../checkpoint.js';
import { DatasetError } from '../datasets/dataset.js';
import { TrainingError, TrainingInterrupted } from '../errors.js';
import { type EvalResult, evaluate } from '../eval.js';
import type { EpochPosition } from '../images/epoch-order.js';
import type { ModelCardInput, ModelCardStage } from '../model-card.js';
import { readRegularText } from '../safe-files.js';
import type { RunLock } from '../run-folder.js';
import type { TrainConfig } from './config.js';
import type { RunData } from './data.js';
import type { EvalRow, MetricsLog, StepRow } from './metrics.js';

export interface TrainHooks {
  /** Default: requestDevice() with the environment's adapter choice. */
  device?: Device;
  /** The image worker entry for datasets on disk (see ImageLoader's workerUrl). */
  workerUrl?: URL;
  /** A progress line (stage starts, evaluations, checkpoints). */
  log?: (line: string) => void;
  onStep?: (row: StepRow) => void;
  onEval?: (row: EvalRow, result: EvalResult) => void;
  onCheckpoint?: (record: CheckpointRecord) => void;
  /** Stage 2's embedding of the training images (once, before its steps): images done of total. */
  onCache?: (done: number, total: number) => void;
  /**
   * Aborting it stops the run after the step in progress: a checkpoint is written and train()
   * rejects with TrainingInterrupted (a resume continues exactly from there).
   */
  signal?: AbortSignal;
  /** The run folder's lock when the caller took it (lockRun) before train(); else train() takes it. */
  lock?: RunLock;
  /** The shell command that trains the run again, for its model card (default: train() on config.json). */
  reproduce?: string;
}

export const BEST_MODEL_FILE = 'best.safetensors';
export const BEST_RECORD_FILE = 'best.json';

/** Which evaluation best.safetensors comes from. */
export interface BestRecord {
  stage: Stage;
  epoch: number;
  step: number;
  head: string;
  /** Validation top-1 of `head`. */
  top1: number;
}

const bestSchema = z.strictObject({ stage: z.literal([1, 2]), epoch: z.int().min(0), step: z.int().min(0), head: z.string().max(32), top1: z.number().min(0).max(1) });

/** best.json of a run folder, or undefined where there is none (or it cannot be read: tracking starts again). */
export function readBest(dir: string): BestRecord | undefined {
  try {
    return parseWith(bestSchema, JSON.parse(readRegularText(join(dir, BEST_RECORD_FILE), { what: 'best record', maxBytes: 64 * 1024 })), BEST_RECORD_FILE, (m) => new CheckpointError(m)) as BestRecord;
  } catch {
    return undefined;
  }
}

/** Skipped images named one by one on the console; the summary lists every one. */
const MAX_NAMED_SKIPS = 10;

/** Where a run stands: what its summary reports, what an error names and what the next step continues from. */
export interface RunProgress {
  /** Optimiser steps of the whole run so far. */
  step: number;
  /** The position of the checkpoint in force. */
  position: RunPosition | undefined;
  /** checkpoint.json in force ('' while none has been written). */
  checkpoint: string;
  /** When it was written (performance.now()); the start of this process before the first. */
  checkpointAt: number;
  /** The best validation result so far (best.json; a resumed run goes on from the one it had). */
  best: BestRecord | undefined;
}

/** Where a new run stands, or a resumed one at its checkpoint. */
export function startProgress(outDir: string, ckpt: LoadedCheckpoint | undefined): RunProgress {
  return {
    step: ckpt?.record.position.step ?? 0,
    position: ckpt?.record.position,
    checkpoint: ckpt ? join(outDir, CHECKPOINT_FILE) : '',
    checkpointAt: performance.now(),
    best: ckpt ? readBest(outDir) : undefined,
  };
}

/** What the best validation result adds to a run's summary and result. */
export function bestEntry(outDir: string, best: BestRecord | undefined): { best?: BestRecord & { model: string } } {
  return best ? { best: { ...best, model: join(outDir, BEST_MODEL_FILE) } } : {};
}

export class RunContext {
  /** Skipped images named on the console so far (those of the run before a resume count as named). */
  private namedSkips: number;

  constructor(
    readonly cfg: TrainConfig,
    readonly hooks: TrainHooks,
    readonly data: RunData,
    readonly model: MPFGVC,
    readonly metrics: MetricsLog,
    readonly progress: RunProgress,
    /** Seconds since this process started the run. */
    readonly seconds: () => number,
  ) {
    this.namedSkips = data.skipped.size;
  }

  say(line: string): void {
    this.hooks.log?.(line);
  }

  out(name: string): string {
    return join(this.cfg.outDir, name);
  }

  /** What a run that stops on an error keeps. */
  kept(): string {
    return this.progress.checkpoint ? `the last good checkpoint ${this.progress.checkpoint} is kept` : 'no checkpoint had been written';
  }

  /** Throws TrainingInterrupted once the caller asked the run to stop (a checkpoint is in force). */
  stopIfAsked(): void {
    const signal = this.hooks.signal;
    if (signal?.aborted) throw new TrainingInterrupted(this.cfg.outDir, this.progress.checkpoint, this.progress.position, signal.reason);
  }

  firstSkipped(): string {
    const first = this.data.skipped.entries().next();
    return first.done ? '' : `; the first: ${first.value[0]}: ${first.value[1]}`;
  }

  /**
   * Names each newly skipped image (the first few; the rest are counted in summary.json) and stops
   * the run once more of the dataset is unreadable than cfg.maxSkippedFraction allows.
   */
  checkSkipped(): void {
    const { data, cfg } = this;
    if (data.skipped.size > this.namedSkips) {
      const fresh = [...data.skipped].slice(this.namedSkips);
      for (const [path, reason] of fresh) {
        this.namedSkips++;
        if (this.namedSkips <= MAX_NAMED_SKIPS) this.say(`skipped an unreadable image: ${path}: ${reason}`);
        if (this.namedSkips === MAX_NAMED_SKIPS) this.say(`further unreadable images are skipped and counted, not named here (summary.json lists them all)`);
      }
    }
    const total = data.trainCount + data.testCount;
    if (data.skipCount > cfg.maxSkippedFraction * total) {
      throw new DatasetError(`${data.skipCount} of the ${total} images are unreadable, more than the ${cfg.maxSkippedFraction} (maxSkippedFraction) the run allows${this.firstSkipped()}`);
    }
  }

  /** Whether a checkpoint is due after the step that ended at `next` (a stop asked for, every N steps or epochs, every M minutes). */
  checkpointDue(next: EpochPosition, epochEnd: boolean): boolean {
    const { cfg, progress } = this;
    return (
      this.hooks.signal?.aborted === true ||
      (cfg.checkpointEvery > 0 && progress.step % cfg.checkpointEvery === 0) ||
      (epochEnd && cfg.checkpointEpochs > 0 && next.epoch % cfg.checkpointEpochs === 0) ||
      (cfg.checkpointMinutes > 0 && performance.now() - progress.checkpointAt >= cfg.checkpointMinutes * 60_000)
    );
  }

  /** Evaluates on a split and records the row; a validation result better than any before is saved as best.safetensors. */
  async evaluate(stage: Stage, epoch: number, text: Tensor | undefined, split: 'val' | 'test', atStep: number): Promise<EvalResult> {
    const { data, cfg, model, progress } = this;
    const result = await evaluate(model, split === 'val' ? data.val(cfg.evalBatchSize) : data.test(cfg.evalBatchSize), text);
    this.checkSkipped();
    if (result.count === 0) throw new DatasetError(`stage ${stage}: not one ${split === 'val' ? 'validation' : 'test'} image could be read (${data.skipCount} unreadable${this.firstSkipped()})`);
    const row: EvalRow = { stage, epoch, split, top1: result.top1, top5: result.top5 };
    this.metrics.append(row);
    this.hooks.onEval?.(row, result);
    const heads = result.heads.map((h) => `${h} ${(100 * result.top1[h]!).toFixed(1)}%`).join(', ');
    this.say(`stage ${stage} epoch ${epoch} ${split} top-1: ${heads} (${result.count} images)`);
    const score = result.top1[result.confusionHead]!;
    if (split === 'val' && (progress.best === undefined || score > progress.best.top1)) {
      const best: BestRecord = { stage, epoch, step: atStep, head: result.confusionHead, top1: score };
      progress.best = best;
      writeFileAtomic(this.out(BEST_MODEL_FILE), await model.save());
      writeFileAtomic(this.out(BEST_RECORD_FILE), `${JSON.stringify(best, null, 1)}\n`);
      this.say(`best so far (validation ${result.confusionHead} top-1 ${(100 * score).toFixed(1)}%): ${this.out(BEST_MODEL_FILE)}`);
    }
    return result;
  }

  /** Writes the model and optimiser at `at` as the checkpoint in force. */
  async checkpoint(at: RunPosition, opt: AdamW | SGD, epoch: number): Promise<void> {
    const { cfg, data, metrics, progress } = this;
    const modelBytes = await this.model.save();
    const optBytes = serializeOptimizer(await opt.state());
    let rec: CheckpointRecord;
    try {
      rec = writeCheckpoint(cfg.outDir, { position: at, seed: cfg.seed, config: cfg, skipped: Object.fromEntries(data.skipped), metricsBytes: metrics.bytes }, modelBytes, optBytes);
    } catch (e) {
      const kept = this.kept();
      const where = `stage ${at.stage}, epoch ${epoch}, step ${at.step}`;
      // A diverged state is the training's failure; a failed write is the disk's, with its own exit code.
      if (e instanceof WriteError) throw new WriteError(e.path, new Error(`${e.message.replace(`cannot write ${e.path}: `, '')} (checkpoint at ${where}); training stopped; ${kept}`));
      throw new TrainingError(`${where}: ${(e as Error).message}; training stopped; ${kept}`);
    }
    progress.checkpoint = this.out(CHECKPOINT_FILE);
    progress.checkpointAt = performance.now();
    progress.position = at;
    this.hooks.onCheckpoint?.(rec);
    this.say(`checkpoint at stage ${at.stage}, step ${at.step}${at.stageDone ? ' (stage end)' : ''}`);
  }

  /** The model card's facts as the run knows them now. */
  cardInput(stages: readonly ModelCardStage[], complete: boolean): Omit<ModelCardInput, 'pictures'> {
    const { cfg, data, model, progress } = this;
    return {
      config: cfg,
      data: { classes: data.classes, superCategory: data.superCategory, train: data.trainCount, val: data.valCount, test: data.testCount, skipped: data.skipCount },
      parameters: model.parameters().reduce((n, t) => n + t.size, 0),
      stages,
      complete,
      ...(progress.best ? { best: progress.best } : {}),
      ...(this.hooks.reproduce ? { reproduce: this.hooks.reproduce } : {}),
    };
  }
}
