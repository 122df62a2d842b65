// One stage of a run: its epochs of micro-batches accumulated into optimiser steps (clipped, on the
// stage's schedule), evaluations and checkpoints when due, and at its end the validation and test
// evaluations, the stage's files and its checkpoint. Each optimiser step is recorded without a host
// round trip; its losses (with the gradient norm: one small read) are read back asynchronously and
// awaited only after the next step has been recorded, so the GPU never waits for the host. A
// checkpoint waits for the step's own losses first: only a run whose losses were all finite is
// ever written over the last good checkpoint.
import { AdamW, SGD, type Tensor, clipGradNorm, decayWeightsOnly, keep, noGrad, scope, tensor } from '@mpfgvc/kernels';
import type { MPFGVC, Stage } from '@mpfgvc/model';
import { writeFileAtomic } from '../atomic.js';
import { CHECKPOINT_FILE, CheckpointError, type LoadedCheckpoint, type RunPosition } from '../checkpoint.js';
import { confusionSvg } from '../confusion-svg.js';
import { DatasetError } from '../datasets/dataset.js';
import { ConfigurationError, TrainingError } from '../errors.js';
import { type EvalResult, confusionCsv } from '../eval.js';
import type { EpochOrder, EpochPosition } from '../images/epoch-order.js';
import { type Schedule, learningRate, validateSchedule } from '../schedule.js';
import type { StageConfig } from './config.js';
import { type DataBatch, memoryBatches, trainOrder } from './data.js';
import type { StepRow } from './metrics.js';
import { type LossSlots, type LossVector, type Objective, addLosses, microStep, nameLosses, readLosses, stageOneObjective, stageTwoObjective } from './objective.js';
import type { RunContext } from './run-context.js';

export interface StageReport {
  stage: Stage;
  steps: number;
  seconds: number;
  /** On the test split. */
  eval: EvalResult;
  /** On the validation split, when the run has one. */
  val?: EvalResult;
  evalJson: string;
  confusionCsv: string;
}

/** No weight decay on biases, norms, embeddings (timm/CLIP names) and DaTP's prompt tokens. */
export function decays(name: string): boolean {
  return decayWeightsOnly(name) && name !== 'datp.prompts';
}

/** The stage's training order and the optimiser steps it makes of it. */
interface StagePlan {
  order: EpochOrder;
  batchesPerEpoch: number;
  stepsPerEpoch: number;
  /** Optimiser steps of the whole stage. */
  total: number;
  schedule: Schedule;
}

function stagePlan(run: RunContext, stage: Stage, sc: StageConfig, resumeAt: RunPosition | undefined): StagePlan {
  const { data, cfg } = run;
  const order = trainOrder(data.trainCount, sc.batchSize, cfg.seed);
  const batchesPerEpoch = order.batchesPerEpoch;
  if (batchesPerEpoch === 0) throw new ConfigurationError(`config: stage ${stage}: batch size ${sc.batchSize} exceeds the ${data.trainCount} training images`);
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / sc.accumulate);
  const total = sc.epochs * stepsPerEpoch;
  const schedule = { base: sc.lr, minLr: sc.minLr, total, warmup: Math.min(total, Math.round(sc.warmupEpochs * stepsPerEpoch)) };
  validateSchedule(schedule);
  if (resumeAt && (resumeAt.stageStep > total || (resumeAt.data.index !== 0 && resumeAt.data.index >= order.epochLength))) {
    throw new CheckpointError(`${run.out(CHECKPOINT_FILE)}: position (step ${resumeAt.stageStep} of ${total}, index ${resumeAt.data.index} of ${order.epochLength}) lies outside stage ${stage}`);
  }
  return { order, batchesPerEpoch, stepsPerEpoch, total, schedule };
}

function stageOptimizer(model: MPFGVC, params: Tensor[], sc: StageConfig): AdamW | SGD {
  const names = new Map(model.namedParameters().map(([n, t]) => [t, n]));
  const entries = params.map((param) => ({ param, decay: decays(names.get(param)!) }));
  return sc.optimizer === 'sgd' ? new SGD(entries, { lr: sc.lr, momentum: sc.momentum, weightDecay: sc.weightDecay }) : new AdamW(entries, { lr: sc.lr, weightDecay: sc.weightDecay });
}

/**
 * Trains one stage from its start, or from `resumed` (a checkpoint within it), and reports its
 * evaluations; undefined for a stage of no epochs.
 */
export async function runStage(run: RunContext, stage: Stage, resumed: LoadedCheckpoint | undefined): Promise<StageReport | undefined> {
  const { cfg, data, model, progress } = run;
  const sc: StageConfig = stage === 1 ? cfg.stage1 : cfg.stage2;
  if (sc.epochs === 0) return undefined;
  const started = performance.now();
  model.setStage(stage);
  const params = model.trainable(stage);
  const opt = stageOptimizer(model, params, sc);
  if (resumed) opt.loadState(resumed.optimizer);
  const resumeAt = resumed?.record.position;
  const plan = stagePlan(run, stage, sc, resumeAt);
  let stageStep = resumeAt?.stageStep ?? 0;
  const from: EpochPosition = resumeAt?.data ?? { epoch: 0, index: 0 };
  run.say(`stage ${stage}: ${sc.epochs} epochs of ${plan.stepsPerEpoch} steps (batch ${sc.batchSize} x ${sc.accumulate}), ${params.length} parameter tensors train`);

  // T once per stage where it cannot change: in stage 2, and throughout with fixed prompts.
  const constantText = stage === 2 || (model.config.prompts === 'fixed' && !model.visionOnly);
  const text = constantText ? keep(noGrad(() => model.textFeatures())) : undefined;
  try {
    const { batches, objective } = await stageInputs(run, stage, sc, plan.order, from, text);
    const reader = new StepReader(run, stage, sc.clipNorm > 0, progress.step - stageStep + plan.total);
    let group: LossVector | undefined;
    let groupImages = 0;
    let epochImages = 0;
    for await (const b of batches) {
      const bi = b.position.index / sc.batchSize;
      const groupStart = Math.floor(bi / sc.accumulate) * sc.accumulate;
      const groupSize = Math.min(sc.accumulate, plan.batchesPerEpoch - groupStart);
      if (b.size > 0) {
        group = addLosses(group, microStep(objective, b, groupSize));
        groupImages += b.size;
        epochImages += b.size;
      }
      run.checkSkipped();
      if (bi + 1 - groupStart < groupSize) continue;

      // The step: schedule, clipping, update; nothing here waits for the GPU.
      const lr = learningRate(plan.schedule, stageStep);
      opt.lr = lr;
      if (group) {
        const norm = sc.clipNorm > 0 ? clipGradNorm(params, sc.clipNorm) : undefined;
        opt.step();
        opt.zeroGrad();
        reader.push({ epoch: b.position.epoch, step: progress.step + 1, lr, images: groupImages, values: readLosses(group, norm), slots: group.slots });
        group = undefined;
      }
      groupImages = 0;
      progress.step++;
      stageStep++;
      // The previous step's losses: their read was issued a step ago.
      await reader.settle(progress.step - 1);

      const epochEnd = b.next.epoch > b.position.epoch;
      if (epochEnd) {
        if (epochImages === 0) throw new DatasetError(`stage ${stage}, epoch ${b.position.epoch}: not one training image could be read (${data.skipCount} unreadable${run.firstSkipped()})`);
        epochImages = 0;
      }
      // The stage's last step is checkpointed at the stage's end, after its evaluation.
      if (run.checkpointDue(b.next, epochEnd) && stageStep < plan.total) {
        await reader.settle(progress.step);
        await run.checkpoint({ stage, stageDone: false, step: progress.step, stageStep, data: b.next }, opt, b.position.epoch);
        run.stopIfAsked();
      }
      if (epochEnd && cfg.evalEvery > 0 && b.next.epoch % cfg.evalEvery === 0 && b.next.epoch < sc.epochs) {
        await reader.settle(progress.step);
        await run.evaluate(stage, b.position.epoch, text, data.valCount > 0 ? 'val' : 'test', progress.step);
      }
    }
    await reader.settle(progress.step);
    return await finishStage(run, stage, sc, opt, text, { steps: stageStep, started });
  } finally {
    text?.dispose();
    opt.dispose();
  }
}

/**
 * The stage's batches and what each costs. Stage 2 without augmentation sees every training image
 * the same way in every epoch through a frozen image side: it trains on their embeddings, computed once.
 */
async function stageInputs(run: RunContext, stage: Stage, sc: StageConfig, order: EpochOrder, from: EpochPosition, text: Tensor | undefined): Promise<{ batches: AsyncGenerator<DataBatch>; objective: Objective }> {
  const { data, model } = run;
  if (stage === 1) return { batches: data.train(sc.batchSize, sc.augment, from, sc.epochs), objective: stageOneObjective(model, sc.labelSmoothing, text) };
  if (sc.augment) return { batches: data.train(sc.batchSize, sc.augment, from, sc.epochs), objective: stageTwoObjective(model, sc.labelSmoothing, text!, 'images') };
  const cacheStarted = performance.now();
  run.say(`stage 2: embedding the ${data.trainCount} training images once (the image encoder is frozen)`);
  const embeddings = await embedTrainingImages(run);
  run.say(`stage 2: embedded in ${((performance.now() - cacheStarted) / 1000).toFixed(1)} s`);
  return { batches: memoryBatches(order, from, sc.epochs, embeddings), objective: stageTwoObjective(model, sc.labelSmoothing, text!, 'embeddings') };
}

/** V = P_v E_V of every training image (frozen in stage 2), read once; unreadable ones absent. */
async function embedTrainingImages(run: RunContext): Promise<{ rows: Float32Array; rowSize: number; labels: Int32Array; present: Uint8Array }> {
  const { cfg, data, model } = run;
  const D = cfg.model.embedDim;
  const S = cfg.model.vision.imageSize;
  const rows = new Float32Array(data.trainCount * D);
  const labels = new Int32Array(data.trainCount);
  const present = new Uint8Array(data.trainCount);
  for await (const b of data.trainPlain(cfg.evalBatchSize)) {
    run.stopIfAsked(); // stage 1's end is checkpointed: nothing here is lost
    if (b.size === 0) continue;
    const joint = noGrad(() => scope(() => model.encodeImages(tensor(model.device, b.rows, [b.size, 3, S, S])).joint));
    const v = (await joint.read()) as Float32Array;
    joint.dispose();
    b.indices.forEach((id, k) => {
      rows.set(v.subarray(k * D, (k + 1) * D), id * D);
      labels[id] = b.labels[k]!;
      present[id] = 1;
    });
    run.hooks.onCache?.(b.next.epoch > 0 ? data.trainCount : b.next.index, data.trainCount);
  }
  return { rows, rowSize: D, labels, present };
}

/** A step whose losses are on their way back. */
interface PendingStep {
  epoch: number;
  step: number;
  lr: number;
  images: number;
  values: Promise<Float32Array>;
  slots: LossSlots;
}

/**
 * The steps of a stage whose losses are still being read back. Once read, a step's losses are
 * checked (a non-finite one stops the run) and every logEvery-th step, and the stage's last,
 * becomes a row of metrics.jsonl.
 */
class StepReader {
  private readonly pending: PendingStep[] = [];
  private lastRowTime: number;
  private imagesSinceRow = 0;

  constructor(
    private readonly run: RunContext,
    private readonly stage: Stage,
    /** The values end with the gradient norm. */
    private readonly clipped: boolean,
    /** The run's step number of the stage's last step. */
    private readonly lastStep: number,
  ) {
    this.lastRowTime = run.seconds();
  }

  push(p: PendingStep): void {
    this.pending.push(p);
  }

  /** Waits for the losses of every step up to `upTo`. */
  async settle(upTo: number): Promise<void> {
    const { run, stage } = this;
    while (this.pending.length > 0 && this.pending[0]!.step <= upTo) {
      const p = this.pending.shift()!;
      const v = await p.values;
      this.imagesSinceRow += p.images;
      if (v.some((x) => !Number.isFinite(x))) {
        const what = `non-finite loss (${Array.from(v).join(', ')}) at stage ${stage}, epoch ${p.epoch}, step ${p.step} (lr ${p.lr})`;
        run.metrics.append({ event: 'diverged', stage, epoch: p.epoch, step: p.step, lr: p.lr, time: run.seconds() });
        throw new TrainingError(`${what}: training stopped; ${run.kept()}`);
      }
      if (p.step % run.cfg.logEvery !== 0 && p.step !== this.lastStep) continue;
      const losses = nameLosses(v, p.slots, this.clipped);
      const now = run.seconds();
      const row: StepRow = { stage, epoch: p.epoch, step: p.step, lr: p.lr, loss: losses.total, imagesPerSec: this.imagesSinceRow / Math.max(1e-9, now - this.lastRowTime), time: now };
      if (losses.vision !== undefined) row.lossVision = losses.vision;
      if (losses.text !== undefined) row.lossText = losses.text;
      if (losses.gradNorm !== undefined) row.gradNorm = losses.gradNorm;
      run.metrics.append(row);
      run.hooks.onStep?.(row);
      this.lastRowTime = now;
      this.imagesSinceRow = 0;
    }
  }
}

/** The stage's end: validation and test evaluations, its files, its checkpoint (and stage 1's model). */
async function finishStage(run: RunContext, stage: Stage, sc: StageConfig, opt: AdamW | SGD, text: Tensor | undefined, done: { steps: number; started: number }): Promise<StageReport> {
  const { data, model } = run;
  const step = run.progress.step;
  const val = data.valCount > 0 ? await run.evaluate(stage, sc.epochs - 1, text, 'val', step) : undefined;
  const result = await run.evaluate(stage, sc.epochs - 1, text, 'test', step);
  const evalJson = run.out(`eval-stage${stage}.json`);
  const csv = run.out(`confusion-stage${stage}.csv`);
  writeFileAtomic(evalJson, JSON.stringify({ stage, split: 'test', classes: data.classes, ...result }, null, 1) + '\n');
  writeFileAtomic(csv, confusionCsv(data.classes, result.confusion));
  writeFileAtomic(run.out(`confusion-stage${stage}.svg`), confusionSvg(data.classes, result.confusion, { title: `stage ${stage}: confusion matrix (${result.confusionHead} head), ${result.count} test images` }));
  await run.checkpoint({ stage, stageDone: true, step, stageStep: done.steps, data: { epoch: sc.epochs, index: 0 } }, opt, sc.epochs - 1);
  if (stage === 1) writeFileAtomic(run.out('model-stage1.safetensors'), await model.save());
  return { stage, steps: done.steps, seconds: (performance.now() - done.started) / 1000, eval: result, ...(val ? { val } : {}), evalJson, confusionCsv: csv };
}
