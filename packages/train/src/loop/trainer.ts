// The two-stage MP-FGVC training loop (DESIGN.md §1). Stage 1 trains the image encoder, the visual
// projection, the vision head and the DaTP tokens on L_v + L_i2t; stage 2 trains VLFM on its own
// cross-entropy with everything else frozen. The ablation variants run through the same loop:
// fixed prompts (their T is a constant, computed once per stage) and the ViT-only objective
// (stage 1 on L_v alone, no stage 2). Each optimiser step is recorded without a host
// round trip; its loss (with the partial losses and the gradient norm: one small read) is read
// back asynchronously and awaited only after the next step has been recorded, so the GPU never
// waits for the host. A checkpoint waits for the step's own loss first: only a run whose losses
// were all finite is ever written over the last good checkpoint.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  AdamW,
  type Device,
  Rng,
  SGD,
  type Tensor,
  add,
  backward,
  clipGradNorm,
  concat,
  crossEntropy,
  decayWeightsOnly,
  keep,
  noGrad,
  requestDevice,
  reshape,
  scale,
  scope,
  tensor,
} from '@mpfgvc/kernels';
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, type PromptTokens, type Stage, TokenizerError } from '@mpfgvc/model';
import { WriteError, writeFileAtomic, writing } from '../atomic.js';
import { fillPrompt } from '../prompts.js';
import { MAX_JSON_BYTES, type Pretrained, loadPretrained, resolvePretrained } from '../pretrained.js';
import { readRegularText } from '../safe-files.js';
import { type CheckpointRecord, type LoadedCheckpoint, type RunPosition, CHECKPOINT_FILE, CheckpointError, hasCheckpoint, readCheckpoint, serializeOptimizer, writeCheckpoint } from '../checkpoint.js';
import { DatasetError } from '../datasets/dataset.js';
import { normalizationStats } from '../images/normalize.js';
import { ConfigurationError, RunFolderError } from '../errors.js';
import { type EvalResult, confusionCsv, evaluate } from '../eval.js';
import type { EpochPosition } from '../images/epoch-order.js';
import { learningRate, validateSchedule } from '../schedule.js';
import { type StageConfig, type TrainConfig, type TrainConfigInput, resolveConfig } from './config.js';
import { type DataBatch, type RunData, memoryBatches, openRunData, trainOrder } from './data.js';
import { type EvalRow, MetricsLog, type StepRow } from './metrics.js';

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
}

export interface StageReport {
  stage: Stage;
  steps: number;
  seconds: number;
  eval: EvalResult;
  evalJson: string;
  confusionCsv: string;
}

export interface TrainResult {
  outDir: string;
  config: TrainConfig;
  /** checkpoint.json of the last checkpoint. */
  checkpoint: string;
  /** The trained model (MPFGVC.save) after both stages. */
  model: string;
  metrics: string;
  summary: string;
  stages: StageReport[];
  /** Unreadable images skipped: path -> reason. */
  skipped: Record<string, string>;
  skipCount: number;
  steps: number;
  seconds: number;
}

export class TrainingError extends Error {
  override name = 'TrainingError';
}

/** No weight decay on biases, norms, embeddings (timm/CLIP names) and DaTP's prompt tokens. */
export function decays(name: string): boolean {
  return decayWeightsOnly(name) && name !== 'datp.prompts';
}

function loadTokenizer(path: string, contextLength: number): ClipTokenizer {
  let text: string;
  try {
    text = readRegularText(path, { what: 'tokenizer', maxBytes: MAX_JSON_BYTES });
  } catch (e) {
    throw new TokenizerError(`tokenizer ${path}: ${(e as Error).message}`);
  }
  return ClipTokenizer.fromText(text, { source: path, contextLength });
}

/** The configuration's prompt tokens, or the tokenizer's (with each class's filled template for fixed prompts). */
function promptTokens(cfg: TrainConfig, superCategory: string, classes: readonly string[]): PromptTokens {
  if (cfg.promptTokens) return cfg.promptTokens;
  const tok = loadTokenizer(cfg.tokenizer!, cfg.model.text.contextLength);
  const tokens: PromptTokens = { classIds: tok.encode(superCategory), sot: tok.sot, eot: tok.eot };
  if (cfg.model.prompts === 'fixed') tokens.classPrompts = classes.map((c) => tok.encode(fillPrompt(cfg.promptTemplate, c, superCategory)));
  return tokens;
}

/** JSON with keys sorted at every level: two configurations compare equal whatever order their keys were written in. */
function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x));
}

/** A recorded position that the run's configuration cannot have produced is a damaged (or crafted) checkpoint. */
function checkResumePosition(at: RunPosition, cfg: TrainConfig, source: string): void {
  const sc = at.stage === 1 ? cfg.stage1 : cfg.stage2;
  const bad = (what: string) => new CheckpointError(`${source}: position ${what}`);
  if (at.stage === 2 && cfg.model.objective === 'vision') throw bad("is in stage 2, which the ViT-only objective does not have");
  if (at.data.epoch > sc.epochs || (at.data.epoch === sc.epochs && at.data.index !== 0)) throw bad(`epoch ${at.data.epoch} (index ${at.data.index}) lies beyond stage ${at.stage}'s ${sc.epochs} epochs`);
  if (at.data.index % sc.batchSize !== 0) throw bad(`index ${at.data.index} is not a multiple of stage ${at.stage}'s batch size ${sc.batchSize}`);
}

interface Pending {
  stage: Stage;
  epoch: number;
  step: number;
  lr: number;
  images: number;
  values: Promise<Float32Array>;
}

/**
 * Trains MP-FGVC through both stages into `config.outDir`, or continues the run in `resume` from its
 * checkpoint (with the configuration recorded there) so that every later loss equals the
 * uninterrupted run's.
 */
export async function train(input: TrainConfigInput | { resume: string }, hooks: TrainHooks = {}): Promise<TrainResult> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const say = hooks.log ?? (() => undefined);

  let ckpt: LoadedCheckpoint | undefined;
  let cfg: TrainConfig;
  let pretrained: Pretrained | undefined;
  if ('resume' in input) {
    ckpt = readCheckpoint(input.resume);
    const recordPath = join(input.resume, CHECKPOINT_FILE);
    try {
      cfg = { ...resolveConfig(ckpt.record.config as unknown as TrainConfigInput, `${recordPath}: config`), outDir: resolve(input.resume) };
    } catch (e) {
      throw new CheckpointError((e as Error).message);
    }
    checkResumePosition(ckpt.record.position, cfg, recordPath);
    say(`resuming ${cfg.outDir} at stage ${ckpt.record.position.stage}, step ${ckpt.record.position.step}`);
  } else {
    cfg = resolveConfig(input);
    cfg.outDir = resolve(cfg.outDir);
    if (cfg.pretrained) {
      // The checkpoints decide the towers' shapes; the run's config records them, so a resume
      // rebuilds the same model without reopening the folders.
      pretrained = resolvePretrained(cfg.pretrained, { ...cfg.model, numClasses: 1, superCategory: '' });
      cfg.model = { ...cfg.model, vision: pretrained.config.vision, text: pretrained.config.text, embedDim: pretrained.config.embedDim };
      // The vision checkpoint's own statistics (ViT-in21k: 0.5/0.5) unless the caller chose.
      if (input.normalization === undefined && pretrained.preprocessing) cfg.normalization = { mean: pretrained.preprocessing.mean, std: pretrained.preprocessing.std };
    }
    if (cfg.tokenizer && !cfg.pretrained?.text) {
      // A text tower trained from scratch needs an embedding row for every id its tokenizer gives.
      const vocab = loadTokenizer(cfg.tokenizer, cfg.model.text.contextLength).vocabSize;
      if (vocab > cfg.model.text.vocabSize) {
        say(`text vocabulary widened from ${cfg.model.text.vocabSize} to the tokenizer's ${vocab}`);
        cfg.model = { ...cfg.model, text: { ...cfg.model.text, vocabSize: vocab } };
      }
    }
    if (hasCheckpoint(cfg.outDir)) throw new RunFolderError(`${cfg.outDir} already holds a run (${CHECKPOINT_FILE}); resume it or choose another outDir`);
    writing(cfg.outDir, () => mkdirSync(cfg.outDir, { recursive: true }));
    writeFileAtomic(join(cfg.outDir, 'config.json'), JSON.stringify(cfg, null, 1) + '\n');
  }
  const out = (name: string) => join(cfg.outDir, name);
  const dev = hooks.device ?? (await requestDevice());
  const metrics = new MetricsLog(out('metrics.jsonl'));
  let data!: RunData;
  let model!: MPFGVC;
  let step = ckpt?.record.position.step ?? 0;
  let lastCheckpoint = ckpt ? out(CHECKPOINT_FILE) : '';
  const stages: StageReport[] = [];
  let status = 'failed';
  let failure: string | undefined;
  try {
    data = openRunData(cfg.data, { imageSize: cfg.model.vision.imageSize, normalization: cfg.normalization, seed: cfg.seed, strict: cfg.strict, ...(hooks.workerUrl ? { workerUrl: hooks.workerUrl } : {}) });
    for (const [path, reason] of Object.entries(ckpt?.record.skipped ?? {})) data.skipped.set(path, reason);
    const modelConfig: MPFGVCConfig = { ...cfg.model, numClasses: data.classes.length, superCategory: data.superCategory };
    model = ckpt ? MPFGVC.load(dev, ckpt.model, join(cfg.outDir, ckpt.record.model)) : new MPFGVC(dev, new Rng(cfg.seed), modelConfig, promptTokens(cfg, data.superCategory, data.classes));
    if (pretrained) loadPretrained(model, pretrained);
    // The file alone is enough to use the model: class names and preprocessing ride in it.
    model.info = {
      classes: data.classes,
      normalization: normalizationStats(cfg.normalization),
      cropRatio: 0.875,
      ...(cfg.model.prompts === 'fixed' ? { promptTemplate: cfg.promptTemplate } : {}),
      dataset: cfg.data.kind === 'synth' ? 'synthetic birds' : cfg.data.root,
    };
    if (ckpt && canonicalJson(model.config) !== canonicalJson(modelConfig)) {
      throw new CheckpointError(`${out(ckpt.record.model)}: the model's configuration differs from the run's (${JSON.stringify(model.config)} vs ${JSON.stringify(modelConfig)})`);
    }
    if (ckpt) metrics.append({ event: 'resume', stage: ckpt.record.position.stage, step: ckpt.record.position.step, time: seconds() });
    for (const stage of [1, 2] as const) {
      const at = ckpt?.record.position;
      if (at && (stage < at.stage || (stage === at.stage && at.stageDone))) continue;
      const resumeAt = at && stage === at.stage ? at : undefined;
      const report = await runStage(stage, resumeAt, resumeAt ? ckpt : undefined);
      if (report) stages.push(report);
    }
    const modelPath = out('model.safetensors');
    writeFileAtomic(modelPath, await model.save());
    status = 'completed';
    say(`done in ${seconds().toFixed(1)} s: ${modelPath}`);
    return {
      outDir: cfg.outDir,
      config: cfg,
      checkpoint: lastCheckpoint,
      model: modelPath,
      metrics: metrics.path,
      summary: out('summary.json'),
      stages,
      skipped: Object.fromEntries(data.skipped),
      skipCount: data.skipCount,
      steps: step,
      seconds: seconds(),
    };
  } catch (e) {
    failure = (e as Error).message;
    throw e;
  } finally {
    const summary = {
      status,
      ...(failure ? { error: failure } : {}),
      outDir: cfg.outDir,
      steps: step,
      seconds: seconds(),
      checkpoint: lastCheckpoint || null,
      stages: stages.map((s) => ({ stage: s.stage, steps: s.steps, seconds: s.seconds, top1: s.eval.top1, top5: s.eval.top5, eval: s.evalJson, confusion: s.confusionCsv })),
      skippedImages: { count: data?.skipCount ?? 0, files: Object.fromEntries(data?.skipped ?? []) },
    };
    let summaryFailure: unknown;
    try {
      writeFileAtomic(out('summary.json'), JSON.stringify(summary, null, 1) + '\n');
    } catch (e) {
      // A run that failed already reports why; a summary that cannot be written must not hide it.
      if (status === 'completed') summaryFailure = e;
    }
    metrics.close();
    model?.dispose();
    await data?.close();
    if (!hooks.device) dev.destroy();
    if (summaryFailure) throw summaryFailure;
  }

  async function runStage(stage: Stage, resumeAt: RunPosition | undefined, resumed: LoadedCheckpoint | undefined): Promise<StageReport | undefined> {
    const sc: StageConfig = stage === 1 ? cfg.stage1 : cfg.stage2;
    if (sc.epochs === 0) return undefined;
    const stageStarted = performance.now();
    model.setStage(stage);
    const names = new Map(model.namedParameters().map(([n, t]) => [t, n]));
    const params = model.trainable(stage);
    const entries = params.map((param) => ({ param, decay: decays(names.get(param)!) }));
    const opt = sc.optimizer === 'sgd' ? new SGD(entries, { lr: sc.lr, momentum: sc.momentum, weightDecay: sc.weightDecay }) : new AdamW(entries, { lr: sc.lr, weightDecay: sc.weightDecay });
    if (resumed) opt.loadState(resumed.optimizer);

    const order = trainOrder(data.trainCount, sc.batchSize, cfg.seed);
    const batchesPerEpoch = order.batchesPerEpoch;
    if (batchesPerEpoch === 0) throw new ConfigurationError(`config: stage ${stage}: batch size ${sc.batchSize} exceeds the ${data.trainCount} training images`);
    const stepsPerEpoch = Math.ceil(batchesPerEpoch / sc.accumulate);
    const total = sc.epochs * stepsPerEpoch;
    const schedule = { base: sc.lr, minLr: sc.minLr, total, warmup: Math.min(total, Math.round(sc.warmupEpochs * stepsPerEpoch)) };
    validateSchedule(schedule);
    if (resumeAt && (resumeAt.stageStep > total || (resumeAt.data.index !== 0 && resumeAt.data.index >= order.epochLength))) {
      throw new CheckpointError(`${out(CHECKPOINT_FILE)}: position (step ${resumeAt.stageStep} of ${total}, index ${resumeAt.data.index} of ${order.epochLength}) lies outside stage ${stage}`);
    }
    let stageStep = resumeAt?.stageStep ?? 0;
    const from: EpochPosition = resumeAt?.data ?? { epoch: 0, index: 0 };
    say(`stage ${stage}: ${sc.epochs} epochs of ${stepsPerEpoch} steps (batch ${sc.batchSize} x ${sc.accumulate}), ${params.length} parameter tensors train`);

    // T once per stage where it cannot change: in stage 2, and throughout with fixed prompts.
    const constantText = stage === 2 || (model.config.prompts === 'fixed' && !model.visionOnly);
    const text = constantText ? keep(noGrad(() => model.textFeatures())) : undefined;
    try {
      let batches: AsyncGenerator<DataBatch>;
      let cached = false;
      if (stage === 2 && !sc.augment) {
        const V = await cacheJoint();
        batches = memoryBatches(order, from, sc.epochs, V);
        cached = true;
      } else {
        batches = data.train(sc.batchSize, sc.augment, from, sc.epochs);
      }

      const pending: Pending[] = [];
      let lastRow = { time: seconds(), images: 0 };
      let imagesSinceRow = 0;
      const settle = async (upTo: number) => {
        while (pending.length > 0 && pending[0]!.step <= upTo) {
          const p = pending.shift()!;
          const v = await p.values;
          imagesSinceRow += p.images;
          const loss = v[0]!;
          if (!Number.isFinite(loss) || v.some((x) => !Number.isFinite(x))) {
            const what = `non-finite loss (${Array.from(v).join(', ')}) at stage ${p.stage}, epoch ${p.epoch}, step ${p.step} (lr ${p.lr})`;
            metrics.append({ event: 'diverged', stage: p.stage, epoch: p.epoch, step: p.step, lr: p.lr, time: seconds() });
            throw new TrainingError(`${what}: training stopped; ${lastCheckpoint ? `the last good checkpoint ${lastCheckpoint} is kept` : 'no checkpoint had been written'}`);
          }
          const last = p.step === step && stageStep === total;
          if (p.step % cfg.logEvery !== 0 && !last) continue;
          const now = seconds();
          const row: StepRow = { stage: p.stage, epoch: p.epoch, step: p.step, lr: p.lr, loss, imagesPerSec: imagesSinceRow / Math.max(1e-9, now - lastRow.time), time: now };
          if (p.stage === 1 && model.visionOnly) row.lossVision = loss;
          else if (p.stage === 1) {
            row.lossVision = v[1]!;
            row.lossText = v[2]!;
          }
          if (sc.clipNorm > 0) row.gradNorm = v[v.length - 1]!;
          metrics.append(row);
          hooks.onStep?.(row);
          lastRow = { time: now, images: 0 };
          imagesSinceRow = 0;
        }
      };

      let group: Tensor | undefined;
      let groupImages = 0;
      let epochImages = 0;
      for await (const b of batches) {
        const bi = b.position.index / sc.batchSize;
        const groupStart = Math.floor(bi / sc.accumulate) * sc.accumulate;
        const groupSize = Math.min(sc.accumulate, batchesPerEpoch - groupStart);
        if (b.size > 0) {
          const losses = microStep(stage, sc, b, groupSize, cached, text);
          const prev = group;
          group = prev ? keep(noGrad(() => add(prev, losses))) : losses;
          if (prev) {
            prev.dispose();
            losses.dispose();
          }
          groupImages += b.size;
          epochImages += b.size;
        }
        checkSkipped();
        if (bi + 1 - groupStart < groupSize) continue;

        // The step: schedule, clipping, update; nothing here waits for the GPU.
        const lr = learningRate(schedule, stageStep);
        opt.lr = lr;
        const done = group;
        group = undefined;
        if (done) {
          const norm = sc.clipNorm > 0 ? clipGradNorm(params, sc.clipNorm) : undefined;
          opt.step();
          opt.zeroGrad();
          const vec = norm ? keep(noGrad(() => concat([done, reshape(norm, [1])], 0))) : done;
          if (norm) {
            norm.dispose();
            done.dispose();
          }
          const values = vec.read().then((x) => x as Float32Array);
          values.finally(() => vec.dispose()).catch(() => undefined);
          pending.push({ stage, epoch: b.position.epoch, step: step + 1, lr, images: groupImages, values });
        }
        groupImages = 0;
        step++;
        stageStep++;
        // The previous step's loss: its read was issued a step ago.
        await settle(step - 1);

        const epochEnd = b.next.epoch > b.position.epoch;
        if (epochEnd) {
          if (epochImages === 0) throw new DatasetError(`stage ${stage}, epoch ${b.position.epoch}: not one training image could be read (${data.skipCount} unreadable${firstSkipped()})`);
          epochImages = 0;
        }
        const position: RunPosition = { stage, stageDone: false, step, stageStep, data: b.next };
        if (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0 && stageStep < total) {
          await settle(step);
          await checkpoint(position, opt, b.position.epoch);
        }
        if (epochEnd && cfg.evalEvery > 0 && b.next.epoch % cfg.evalEvery === 0 && b.next.epoch < sc.epochs) {
          await settle(step);
          await evalRow(stage, b.position.epoch, text);
        }
      }
      await settle(step);

      const result = await evalRow(stage, sc.epochs - 1, text);
      const evalJson = out(`eval-stage${stage}.json`);
      const csv = out(`confusion-stage${stage}.csv`);
      writeFileAtomic(evalJson, JSON.stringify({ stage, split: 'test', classes: data.classes, ...result }, null, 1) + '\n');
      writeFileAtomic(csv, confusionCsv(data.classes, result.confusion));
      await checkpoint({ stage, stageDone: true, step, stageStep, data: { epoch: sc.epochs, index: 0 } }, opt, sc.epochs - 1);
      if (stage === 1) writeFileAtomic(out('model-stage1.safetensors'), await model.save());
      return { stage, steps: stageStep, seconds: (performance.now() - stageStarted) / 1000, eval: result, evalJson, confusionCsv: csv };
    } finally {
      text?.dispose();
      opt.dispose();
    }
  }

  /** One batch's forward and backward (gradients accumulate); returns [L, L_v, L_i2t] / groupSize ([L_v] for ViT only, [L_2] in stage 2). */
  function microStep(stage: Stage, sc: StageConfig, b: DataBatch, groupSize: number, cached: boolean, text: Tensor | undefined): Tensor {
    return scope(() => {
      const smoothing = { labelSmoothing: sc.labelSmoothing };
      let parts: Tensor[];
      if (stage === 1 && model.visionOnly) {
        const S = cfg.model.vision.imageSize;
        parts = [model.stageOneVision(tensor(dev, b.rows, [b.size, 3, S, S]), b.labels, smoothing).loss];
      } else if (stage === 1) {
        const S = cfg.model.vision.imageSize;
        const o = model.stageOne(tensor(dev, b.rows, [b.size, 3, S, S]), b.labels, { ...smoothing, ...(text ? { text } : {}) });
        parts = [o.loss, o.lossVision, o.lossText];
      } else if (cached) {
        const logits = model.vlfm.forward(tensor(dev, b.rows, [b.size, cfg.model.embedDim]), text!);
        parts = [crossEntropy(logits, b.labels, smoothing)];
      } else {
        const S = cfg.model.vision.imageSize;
        parts = [model.stageTwo(tensor(dev, b.rows, [b.size, 3, S, S]), b.labels, text!, smoothing).loss];
      }
      backward(groupSize === 1 ? parts[0]! : scale(parts[0]!, 1 / groupSize));
      return keep(noGrad(() => scale(concat(parts.map((p) => reshape(p, [1])), 0), 1 / groupSize)));
    });
  }

  /** V = P_v E_V of every training image (frozen in stage 2), read once; unreadable ones absent. */
  async function cacheJoint(): Promise<{ rows: Float32Array; rowSize: number; labels: Int32Array; present: Uint8Array }> {
    const D = cfg.model.embedDim;
    const S = cfg.model.vision.imageSize;
    const rows = new Float32Array(data.trainCount * D);
    const labels = new Int32Array(data.trainCount);
    const present = new Uint8Array(data.trainCount);
    for await (const b of data.trainPlain(cfg.evalBatchSize)) {
      if (b.size === 0) continue;
      const joint = noGrad(() => scope(() => model.encodeImages(tensor(dev, b.rows, [b.size, 3, S, S])).joint));
      const v = (await joint.read()) as Float32Array;
      joint.dispose();
      b.indices.forEach((id, k) => {
        rows.set(v.subarray(k * D, (k + 1) * D), id * D);
        labels[id] = b.labels[k]!;
        present[id] = 1;
      });
    }
    return { rows, rowSize: D, labels, present };
  }

  async function evalRow(stage: Stage, epoch: number, text: Tensor | undefined): Promise<EvalResult> {
    const result = await evaluate(model, data.test(cfg.evalBatchSize), text);
    checkSkipped();
    if (result.count === 0) throw new DatasetError(`stage ${stage}: not one test image could be read (${data.skipCount} unreadable${firstSkipped()})`);
    const row: EvalRow = { stage, epoch, split: 'test', top1: result.top1, top5: result.top5 };
    metrics.append(row);
    hooks.onEval?.(row, result);
    const heads = result.heads.map((h) => `${h} ${(100 * result.top1[h]!).toFixed(1)}%`).join(', ');
    say(`stage ${stage} epoch ${epoch} test top-1: ${heads} (${result.count} images)`);
    return result;
  }

  function firstSkipped(): string {
    const first = data.skipped.entries().next();
    return first.done ? '' : `; the first: ${first.value[0]}: ${first.value[1]}`;
  }

  /** Stops the run once more of the dataset is unreadable than cfg.maxSkippedFraction allows. */
  function checkSkipped(): void {
    const total = data.trainCount + data.testCount;
    if (data.skipCount > cfg.maxSkippedFraction * total) {
      throw new DatasetError(`${data.skipCount} of the ${total} images are unreadable, more than the ${cfg.maxSkippedFraction} (maxSkippedFraction) the run allows${firstSkipped()}`);
    }
  }

  async function checkpoint(position: RunPosition, opt: AdamW | SGD, epoch: number): Promise<void> {
    const modelBytes = await model.save();
    const optBytes = serializeOptimizer(await opt.state());
    let rec: CheckpointRecord;
    try {
      rec = writeCheckpoint(cfg.outDir, { position, seed: cfg.seed, config: cfg, skipped: Object.fromEntries(data.skipped) }, modelBytes, optBytes);
    } catch (e) {
      const kept = lastCheckpoint ? `the last good checkpoint ${lastCheckpoint} is kept` : 'no checkpoint had been written';
      const where = `stage ${position.stage}, epoch ${epoch}, step ${position.step}`;
      // A diverged state is the training's failure; a failed write is the disk's, with its own exit code.
      if (e instanceof WriteError) throw new WriteError(e.path, new Error(`${e.message.replace(`cannot write ${e.path}: `, '')} (checkpoint at ${where}); training stopped; ${kept}`));
      throw new TrainingError(`${where}: ${(e as Error).message}; training stopped; ${kept}`);
    }
    lastCheckpoint = out(CHECKPOINT_FILE);
    hooks.onCheckpoint?.(rec);
    say(`checkpoint at stage ${position.stage}, step ${position.step}${position.stageDone ? ' (stage end)' : ''}`);
  }
}
