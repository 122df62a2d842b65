// The two-stage MP-FGVC training loop (docs/method.md §8). Stage 1 trains the image encoder, the visual
// projection, the vision head and the DaTP tokens on L_v + L_i2t; stage 2 trains VLFM on its own
// cross-entropy with everything else frozen. The ablation variants run through the same loop:
// fixed prompts (their T is a constant, computed once per stage) and the ViT-only objective
// (stage 1 on L_v alone, no stage 2). Each optimiser step is recorded without a host
// round trip; its loss (with the partial losses and the gradient norm: one small read) is read
// back asynchronously and awaited only after the next step has been recorded, so the GPU never
// waits for the host. A checkpoint waits for the step's own loss first: only a run whose losses
// were all finite is ever written over the last good checkpoint.
import { copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  AdamW,
  type Device,
  DeviceLostError,
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
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, type PromptTokens, type Stage, TokenizerError, parseWith } from '@mpfgvc/model';
import { z } from 'zod';
import { WriteError, writeFileAtomic, writing } from '../atomic.js';
import { fillPrompt } from '../prompts.js';
import { MAX_JSON_BYTES, type Pretrained, loadPretrained, resolvePretrained } from '../pretrained.js';
import { readRegularText } from '../safe-files.js';
import {
  type CheckpointRecord,
  type LoadedCheckpoint,
  type RunPosition,
  CHECKPOINT_FILE,
  CheckpointError,
  STAGE1_CHECKPOINT_FILE,
  readCheckpoint,
  readCheckpointRecord,
  serializeOptimizer,
  writeCheckpoint,
} from '../checkpoint.js';
import { type RunLock, lockRun, takeRunFolder } from '../run-folder.js';
import { DatasetError } from '../datasets/dataset.js';
import { normalizationStats } from '../images/normalize.js';
import { ConfigurationError, RunFolderError } from '../errors.js';
import { confusionSvg } from '../confusion-svg.js';
import { type EvalResult, confusionCsv, evaluate } from '../eval.js';
import { type ModelCardInput, writeModelCard } from '../model-card.js';
import type { EpochPosition } from '../images/epoch-order.js';
import { learningRate, validateSchedule } from '../schedule.js';
import { type StageConfig, type TrainConfig, type TrainConfigInput, recordedConfig, resolveConfig } from './config.js';
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

/** Continue a run from its checkpoint, with the configuration recorded there. */
export interface ResumeInput {
  resume: string;
  /**
   * Longer stages than the run has (epochs only grow). A longer stage 1 continues from where
   * stage 1 stands (its cosine schedule stretched to the new length); a longer stage 2 trains
   * stage 2 again from the end of stage 1, as a run started with that length would.
   */
  epochs?: { stage1?: number; stage2?: number };
  /** Continue into this folder (a branch of the run) and leave the one in `resume` as it is. */
  outDir?: string;
}

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
  /** best.safetensors and the validation result it was saved at (runs with a validation split). */
  best?: BestRecord & { model: string };
  /** What the model card (README.md) was written from, when this call trained: a caller that adds pictures writes it again with writeModelCard. */
  card?: Omit<ModelCardInput, 'pictures'>;
}

export class TrainingError extends Error {
  override name = 'TrainingError';
}

/** The run stopped on request (TrainHooks.signal) with a checkpoint to resume from. */
export class TrainingInterrupted extends Error {
  override name = 'TrainingInterrupted';
  constructor(
    readonly outDir: string,
    /** checkpoint.json in force ('' if none was ever written). */
    readonly checkpoint: string,
    readonly position: RunPosition | undefined,
    /** What aborted the signal (e.g. 'SIGINT'), when it said. */
    readonly reason: unknown,
  ) {
    const at = position ? `stage ${position.stage}, step ${position.step}` : 'the start';
    super(checkpoint ? `stopped at ${at}; checkpoint ${checkpoint}` : `stopped before the first checkpoint of ${outDir}`);
  }
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

/**
 * The checkpoint a resume starts from and the configuration it continues with: the run's own, with
 * longer stages where asked. A run branched into another folder gets a copy of what it needs
 * there first. Rows of metrics.jsonl written after the checkpoint (by a run killed later) go.
 */
function prepareResume(input: ResumeInput, take: (dir: string, fresh: { refusal: string } | undefined) => void, say: (line: string) => void): { ckpt: LoadedCheckpoint; cfg: TrainConfig } {
  const from = resolve(input.resume);
  const recordPath = join(from, CHECKPOINT_FILE);
  const record = readCheckpointRecord(from);
  let ran: TrainConfig;
  try {
    ran = resolveConfig(recordedConfig(record.config), `${recordPath}: config`);
  } catch (e) {
    throw new CheckpointError((e as Error).message);
  }
  checkResumePosition(record.position, ran, recordPath);
  let cfg = ran;
  const at = record.position;
  let file = CHECKPOINT_FILE;
  const longer = { 1: false, 2: false };
  for (const stage of [1, 2] as const) {
    const want = input.epochs?.[`stage${stage}`];
    const have = (stage === 1 ? ran.stage1 : ran.stage2).epochs;
    if (want === undefined || want === have) continue;
    if (!Number.isInteger(want) || want < have) throw new ConfigurationError(`stage ${stage} epochs: a resumed run's stages can only grow (it has ${have}), got ${want}`);
    longer[stage] = true;
    cfg = { ...cfg, [`stage${stage}`]: { ...(stage === 1 ? cfg.stage1 : cfg.stage2), epochs: want } };
  }
  if (longer[1] || longer[2]) {
    cfg = resolveConfig(cfg as unknown as TrainConfigInput, 'the longer run');
    // Stage 2 starts from the end of stage 1; so does a longer stage 1 once stage 1 has ended.
    if (at.stage === 2) {
      file = STAGE1_CHECKPOINT_FILE;
      if (!existsSync(join(from, file))) throw new CheckpointError(`${from}: no checkpoint at the end of stage 1 (${file}) to train a longer stage ${longer[1] ? 1 : 2} from`);
    }
  }
  const dest = input.outDir ? resolve(input.outDir) : from;
  if (dest !== from) {
    take(dest, { refusal: 'branch into another folder' });
    branchRun(from, dest, file);
  } else take(from, undefined);
  cfg = { ...cfg, outDir: dest };
  let ckpt = readCheckpoint(dest, file);
  if (longer[1] || longer[2] || dest !== from) {
    // The folder records the run it now holds: a later resume continues this one.
    writeFileAtomic(join(dest, 'config.json'), JSON.stringify(cfg, null, 1) + '\n');
    writeFileAtomic(join(dest, CHECKPOINT_FILE), JSON.stringify({ ...ckpt.record, config: cfg }, null, 1) + '\n');
  }
  // A stage that ended shorter than the run now asks for goes on.
  const p = ckpt.record.position;
  const sc = p.stage === 1 ? cfg.stage1 : cfg.stage2;
  if (p.stageDone && p.data.epoch < sc.epochs) ckpt = { ...ckpt, record: { ...ckpt.record, position: { ...p, stageDone: false } } };
  checkResumePosition(ckpt.record.position, cfg, join(dest, file));
  const what = longer[2] && at.stage === 2 ? `; stage 2 trains again from the end of stage 1 with ${cfg.stage2.epochs} epochs (was ${ran.stage2.epochs})` : longer[1] ? `; stage 1 goes on to ${cfg.stage1.epochs} epochs (was ${ran.stage1.epochs})` : '';
  say(`resuming ${dest}${dest !== from ? ` (branched from ${from})` : ''} at stage ${ckpt.record.position.stage}, step ${ckpt.record.position.step}${what}`);
  dropMetricsAfter(join(dest, 'metrics.jsonl'), ckpt.record.metricsBytes, say);
  return { ckpt, cfg };
}

/** Copies what a resume needs from the run in `from` into the new folder `dest` (taken already). */
function branchRun(from: string, dest: string, file: string): void {
  const need = new Set(['config.json', 'cli.json', 'metrics.jsonl', 'model-stage1.safetensors', 'eval-stage1.json', 'confusion-stage1.csv', 'summary.json', BEST_MODEL_FILE, BEST_RECORD_FILE]);
  const start = readCheckpointRecord(from, file);
  for (const f of [file, start.model, start.optimizer]) need.add(f);
  if (start.position.stage === 2) for (const f of ['eval-stage2.json', 'confusion-stage2.csv']) need.add(f);
  if (existsSync(join(from, STAGE1_CHECKPOINT_FILE))) {
    const s1 = readCheckpointRecord(from, STAGE1_CHECKPOINT_FILE);
    for (const f of [STAGE1_CHECKPOINT_FILE, s1.model, s1.optimizer]) need.add(f);
  }
  for (const f of need) {
    const src = join(from, f);
    if (existsSync(src)) writing(join(dest, f), () => copyFileSync(src, join(dest, f)));
  }
}

/** Drops the rows of metrics.jsonl written after a checkpoint (recorded length `bytes`), atomically. */
function dropMetricsAfter(path: string, bytes: number | undefined, say: (line: string) => void): void {
  if (bytes === undefined || !existsSync(path) || statSync(path).size <= bytes) return;
  const all = readFileSync(path);
  const dropped = all.subarray(bytes).toString('utf8').split('\n').filter((l) => l.trim() !== '').length;
  writeFileAtomic(path, all.subarray(0, bytes));
  say(`metrics.jsonl: ${dropped} row${dropped === 1 ? '' : 's'} written after the checkpoint dropped`);
}

/** Reports of the stages a resumed run finished before (from their eval files and the summary then). */
function earlierStages(dir: string, at: RunPosition): StageReport[] {
  const reports: StageReport[] = [];
  let before: { stages?: { stage?: unknown; steps?: unknown; seconds?: unknown }[] } = {};
  try {
    before = JSON.parse(readRegularText(join(dir, 'summary.json'), { what: 'run summary', maxBytes: MAX_JSON_BYTES })) as typeof before;
  } catch {
    // no summary yet (a run killed in its first stage), or a damaged one: steps and times unknown
  }
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  for (const stage of [1, 2] as const) {
    if (!(stage < at.stage || (stage === at.stage && at.stageDone))) continue;
    const evalJson = join(dir, `eval-stage${stage}.json`);
    let result: EvalResult;
    try {
      result = JSON.parse(readRegularText(evalJson, { what: 'evaluation', maxBytes: MAX_JSON_BYTES })) as EvalResult;
      if (!Array.isArray(result.heads) || typeof result.top1 !== 'object') continue;
    } catch {
      continue; // a stage without epochs, or a report lost: the summary goes without it
    }
    const then = Array.isArray(before.stages) ? before.stages.find((s) => s?.stage === stage) : undefined;
    reports.push({ stage, steps: num(then?.steps), seconds: num(then?.seconds), eval: result, evalJson, confusionCsv: join(dir, `confusion-stage${stage}.csv`) });
  }
  return reports;
}

/** The result of a run that had already finished (resumed with nothing left to train). */
function finishedResult(cfg: TrainConfig, record: CheckpointRecord, seconds: number): TrainResult {
  const out = (name: string) => join(cfg.outDir, name);
  const best = readBest(cfg.outDir);
  return {
    outDir: cfg.outDir,
    config: cfg,
    checkpoint: out(CHECKPOINT_FILE),
    model: out('model.safetensors'),
    metrics: out('metrics.jsonl'),
    summary: out('summary.json'),
    stages: earlierStages(cfg.outDir, record.position),
    skipped: record.skipped,
    skipCount: Object.keys(record.skipped).length,
    steps: record.position.step,
    seconds,
    ...(best ? { best: { ...best, model: out(BEST_MODEL_FILE) } } : {}),
  };
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
function readBest(dir: string): BestRecord | undefined {
  try {
    return parseWith(bestSchema, JSON.parse(readRegularText(join(dir, BEST_RECORD_FILE), { what: 'best record', maxBytes: 64 * 1024 })), BEST_RECORD_FILE, (m) => new CheckpointError(m)) as BestRecord;
  } catch {
    return undefined;
  }
}

/** Skipped images named one by one on the console; the summary lists every one. */
const MAX_NAMED_SKIPS = 10;

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
 * uninterrupted run's. The run folder is locked while it trains (see lockRun).
 */
export async function train(input: TrainConfigInput | ResumeInput, hooks: TrainHooks = {}): Promise<TrainResult> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const say = hooks.log ?? (() => undefined);

  let ckpt: LoadedCheckpoint | undefined;
  let cfg: TrainConfig;
  let pretrained: Pretrained | undefined;
  let lock = hooks.lock;
  // A lock the caller took comes with its own checks of the folder; else train() takes the folder:
  // `fresh` for a new run (refused if it holds one), else the run's own folder.
  const take = (dir: string, fresh: { refusal: string } | undefined) => {
    if (!lock) lock = fresh ? takeRunFolder(dir, { command: 'train', refusal: fresh.refusal }) : lockRun(dir);
    else if (resolve(lock.path, '..') !== resolve(dir)) throw new RunFolderError(`the lock given (${lock.path}) is not ${dir}'s`);
  };
  try {
    if ('resume' in input) {
      const r = prepareResume(input, take, say);
      ckpt = r.ckpt;
      cfg = r.cfg;
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
      take(cfg.outDir, { refusal: 'resume it or choose another outDir' });
      writeFileAtomic(join(cfg.outDir, 'config.json'), JSON.stringify(cfg, null, 1) + '\n');
    }
  } catch (e) {
    if (!hooks.lock) lock?.release();
    throw e;
  }
  const out = (name: string) => join(cfg.outDir, name);
  const at0 = ckpt?.record.position;
  const willRun = ([1, 2] as const).filter((stage) => (stage === 1 ? cfg.stage1 : cfg.stage2).epochs > 0 && !(at0 && (stage < at0.stage || (stage === at0.stage && at0.stageDone))));
  if (ckpt && willRun.length === 0 && existsSync(out('model.safetensors'))) {
    // A finished run: nothing to train, and nothing of it is rewritten.
    if (!hooks.lock) lock?.release();
    say(`${cfg.outDir} is complete (stage ${at0!.stage}, step ${at0!.step}); give more epochs to train further`);
    return finishedResult(cfg, ckpt.record, seconds());
  }
  const dev = hooks.device ?? (await requestDevice());
  const metrics = new MetricsLog(out('metrics.jsonl'));
  let data!: RunData;
  let model!: MPFGVC;
  let step = ckpt?.record.position.step ?? 0;
  let position: RunPosition | undefined = ckpt?.record.position;
  let lastCheckpoint = ckpt ? out(CHECKPOINT_FILE) : '';
  let lastCheckpointAt = performance.now();
  // Skipped images named on the console so far (those of the run before a resume count as named).
  let namedSkips = 0;
  // The best validation result so far (best.json; a resumed run goes on from the one it had).
  let best: BestRecord | undefined = ckpt ? readBest(cfg.outDir) : undefined;
  const bestEntry = () => (best ? { best: { ...best, model: out(BEST_MODEL_FILE) } } : {});
  /** The model card's facts as the run knows them now. */
  const cardInput = (complete: boolean): Omit<ModelCardInput, 'pictures'> => ({
    config: cfg,
    data: { classes: data.classes, superCategory: data.superCategory, train: data.trainCount, val: data.valCount, test: data.testCount, skipped: data.skipCount },
    parameters: model.parameters().reduce((n, t) => n + t.size, 0),
    stages,
    complete,
    ...(best ? { best } : {}),
    ...(hooks.reproduce ? { reproduce: hooks.reproduce } : {}),
  });
  // Stages finished before this process (a resumed run): their reports as written then.
  const stages: StageReport[] = ckpt ? earlierStages(cfg.outDir, ckpt.record.position) : [];
  let status = 'failed';
  let failure: string | undefined;
  try {
    data = openRunData(cfg.data, { imageSize: cfg.model.vision.imageSize, normalization: cfg.normalization, seed: cfg.seed, strict: cfg.strict, ...(hooks.workerUrl ? { workerUrl: hooks.workerUrl } : {}) });
    for (const [path, reason] of Object.entries(ckpt?.record.skipped ?? {})) data.skipped.set(path, reason);
    namedSkips = data.skipped.size;
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
    for (const stage of willRun) {
      stopIfAsked();
      const at = ckpt?.record.position;
      const resumeAt = at && stage === at.stage ? at : undefined;
      const report = await runStage(stage, resumeAt, resumeAt ? ckpt : undefined);
      if (report) {
        stages.push(report);
        writeModelCard(cfg.outDir, cardInput(false));
      }
    }
    const modelPath = out('model.safetensors');
    writeFileAtomic(modelPath, await model.save());
    const card = cardInput(true);
    writeModelCard(cfg.outDir, card);
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
      ...bestEntry(),
      card,
    };
  } catch (e) {
    if (e instanceof TrainingInterrupted) status = 'interrupted';
    failure = (e as Error).message;
    if (e instanceof DeviceLostError) {
      // The GPU's failure, not the run's: what was checkpointed resumes on a working device.
      const where = position ? `; the checkpoint at stage ${position.stage}, step ${position.step} is kept (resume the run)` : '; no checkpoint had been written';
      throw new DeviceLostError(`${e.message}: training stopped at step ${step}${where}`);
    }
    throw e;
  } finally {
    const summary = {
      status,
      ...(failure ? { error: failure } : {}),
      outDir: cfg.outDir,
      steps: step,
      seconds: seconds(),
      checkpoint: lastCheckpoint || null,
      stages: stages.map((s) => ({ stage: s.stage, steps: s.steps, seconds: s.seconds, top1: s.eval.top1, top5: s.eval.top5, ...(s.val ? { val: { top1: s.val.top1, top5: s.val.top5, count: s.val.count } } : {}), eval: s.evalJson, confusion: s.confusionCsv })),
      ...bestEntry(),
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
    if (!hooks.lock) lock?.release();
    if (summaryFailure) throw summaryFailure;
  }

  /** Throws TrainingInterrupted once the caller asked the run to stop (a checkpoint is in force). */
  function stopIfAsked(): void {
    if (hooks.signal?.aborted) throw new TrainingInterrupted(cfg.outDir, lastCheckpoint, position, hooks.signal.reason);
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
        const cacheStarted = performance.now();
        say(`stage 2: embedding the ${data.trainCount} training images once (the image encoder is frozen)`);
        const V = await cacheJoint();
        say(`stage 2: embedded in ${((performance.now() - cacheStarted) / 1000).toFixed(1)} s`);
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
          // In a scope: the reshaped view of the norm holds its buffer until it is disposed too.
          const vec = norm ? keep(scope(() => noGrad(() => concat([done, reshape(norm, [1])], 0)))) : done;
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
        const here: RunPosition = { stage, stageDone: false, step, stageStep, data: b.next };
        const stop = hooks.signal?.aborted === true;
        const due =
          stop ||
          (cfg.checkpointEvery > 0 && step % cfg.checkpointEvery === 0) ||
          (epochEnd && cfg.checkpointEpochs > 0 && b.next.epoch % cfg.checkpointEpochs === 0) ||
          (cfg.checkpointMinutes > 0 && performance.now() - lastCheckpointAt >= cfg.checkpointMinutes * 60_000);
        // The stage's last step is checkpointed at the stage's end, after its evaluation.
        if (due && stageStep < total) {
          await settle(step);
          await checkpoint(here, opt, b.position.epoch);
          stopIfAsked();
        }
        if (epochEnd && cfg.evalEvery > 0 && b.next.epoch % cfg.evalEvery === 0 && b.next.epoch < sc.epochs) {
          await settle(step);
          await evalRow(stage, b.position.epoch, text, data.valCount > 0 ? 'val' : 'test', step);
        }
      }
      await settle(step);

      const val = data.valCount > 0 ? await evalRow(stage, sc.epochs - 1, text, 'val', step) : undefined;
      const result = await evalRow(stage, sc.epochs - 1, text, 'test', step);
      const evalJson = out(`eval-stage${stage}.json`);
      const csv = out(`confusion-stage${stage}.csv`);
      writeFileAtomic(evalJson, JSON.stringify({ stage, split: 'test', classes: data.classes, ...result }, null, 1) + '\n');
      writeFileAtomic(csv, confusionCsv(data.classes, result.confusion));
      writeFileAtomic(out(`confusion-stage${stage}.svg`), confusionSvg(data.classes, result.confusion, { title: `stage ${stage}: confusion matrix (${result.confusionHead} head), ${result.count} test images` }));
      await checkpoint({ stage, stageDone: true, step, stageStep, data: { epoch: sc.epochs, index: 0 } }, opt, sc.epochs - 1);
      if (stage === 1) writeFileAtomic(out('model-stage1.safetensors'), await model.save());
      return { stage, steps: stageStep, seconds: (performance.now() - stageStarted) / 1000, eval: result, ...(val ? { val } : {}), evalJson, confusionCsv: csv };
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
      stopIfAsked(); // stage 1's end is checkpointed: nothing here is lost
      if (b.size === 0) continue;
      const joint = noGrad(() => scope(() => model.encodeImages(tensor(dev, b.rows, [b.size, 3, S, S])).joint));
      const v = (await joint.read()) as Float32Array;
      joint.dispose();
      b.indices.forEach((id, k) => {
        rows.set(v.subarray(k * D, (k + 1) * D), id * D);
        labels[id] = b.labels[k]!;
        present[id] = 1;
      });
      hooks.onCache?.(b.next.epoch > 0 ? data.trainCount : b.next.index, data.trainCount);
    }
    return { rows, rowSize: D, labels, present };
  }

  /** Evaluates on a split and records the row; a validation result better than any before is saved as best.safetensors. */
  async function evalRow(stage: Stage, epoch: number, text: Tensor | undefined, split: 'val' | 'test', atStep: number): Promise<EvalResult> {
    const result = await evaluate(model, split === 'val' ? data.val(cfg.evalBatchSize) : data.test(cfg.evalBatchSize), text);
    checkSkipped();
    if (result.count === 0) throw new DatasetError(`stage ${stage}: not one ${split === 'val' ? 'validation' : 'test'} image could be read (${data.skipCount} unreadable${firstSkipped()})`);
    const row: EvalRow = { stage, epoch, split, top1: result.top1, top5: result.top5 };
    metrics.append(row);
    hooks.onEval?.(row, result);
    const heads = result.heads.map((h) => `${h} ${(100 * result.top1[h]!).toFixed(1)}%`).join(', ');
    say(`stage ${stage} epoch ${epoch} ${split} top-1: ${heads} (${result.count} images)`);
    const score = result.top1[result.confusionHead]!;
    if (split === 'val' && (best === undefined || score > best.top1)) {
      best = { stage, epoch, step: atStep, head: result.confusionHead, top1: score };
      writeFileAtomic(out(BEST_MODEL_FILE), await model.save());
      writeFileAtomic(out(BEST_RECORD_FILE), `${JSON.stringify(best, null, 1)}\n`);
      say(`best so far (validation ${result.confusionHead} top-1 ${(100 * score).toFixed(1)}%): ${out(BEST_MODEL_FILE)}`);
    }
    return result;
  }

  function firstSkipped(): string {
    const first = data.skipped.entries().next();
    return first.done ? '' : `; the first: ${first.value[0]}: ${first.value[1]}`;
  }

  /**
   * Names each newly skipped image (the first few; the rest are counted in summary.json) and stops
   * the run once more of the dataset is unreadable than cfg.maxSkippedFraction allows.
   */
  function checkSkipped(): void {
    if (data.skipped.size > namedSkips) {
      const fresh = [...data.skipped].slice(namedSkips);
      for (const [path, reason] of fresh) {
        namedSkips++;
        if (namedSkips <= MAX_NAMED_SKIPS) say(`skipped an unreadable image: ${path}: ${reason}`);
        if (namedSkips === MAX_NAMED_SKIPS) say(`further unreadable images are skipped and counted, not named here (summary.json lists them all)`);
      }
    }
    const total = data.trainCount + data.testCount;
    if (data.skipCount > cfg.maxSkippedFraction * total) {
      throw new DatasetError(`${data.skipCount} of the ${total} images are unreadable, more than the ${cfg.maxSkippedFraction} (maxSkippedFraction) the run allows${firstSkipped()}`);
    }
  }

  async function checkpoint(at: RunPosition, opt: AdamW | SGD, epoch: number): Promise<void> {
    const modelBytes = await model.save();
    const optBytes = serializeOptimizer(await opt.state());
    let rec: CheckpointRecord;
    try {
      rec = writeCheckpoint(cfg.outDir, { position: at, seed: cfg.seed, config: cfg, skipped: Object.fromEntries(data.skipped), metricsBytes: metrics.bytes }, modelBytes, optBytes);
    } catch (e) {
      const kept = lastCheckpoint ? `the last good checkpoint ${lastCheckpoint} is kept` : 'no checkpoint had been written';
      const where = `stage ${at.stage}, epoch ${epoch}, step ${at.step}`;
      // A diverged state is the training's failure; a failed write is the disk's, with its own exit code.
      if (e instanceof WriteError) throw new WriteError(e.path, new Error(`${e.message.replace(`cannot write ${e.path}: `, '')} (checkpoint at ${where}); training stopped; ${kept}`));
      throw new TrainingError(`${where}: ${(e as Error).message}; training stopped; ${kept}`);
    }
    lastCheckpoint = out(CHECKPOINT_FILE);
    lastCheckpointAt = performance.now();
    position = at;
    hooks.onCheckpoint?.(rec);
    say(`checkpoint at stage ${at.stage}, step ${at.step}${at.stageDone ? ' (stage end)' : ''}`);
  }
}
