// The two-stage MP-FGVC training run (docs/method.md §8). Stage 1 trains the image encoder, the visual
// projection, the vision head and the DaTP tokens on L_v + L_i2t; stage 2 trains VLFM on its own
// cross-entropy with everything else frozen. The ablation variants run through the same loop:
// fixed prompts (their T is a constant, computed once per stage) and the ViT-only objective
// (stage 1 on L_v alone, no stage 2). train() sets a run up (new, or resumed from its checkpoint,
// maybe into a branch), runs its stages (stage.ts; their losses in objective.ts) and writes its
// summary whatever the outcome.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Device, DeviceLostError, Rng, requestDevice } from '@mpfgvc/kernels';
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, type PromptTokens, TokenizerError } from '@mpfgvc/model';
import { writeFileAtomic } from '../atomic.js';
import { type CheckpointRecord, type LoadedCheckpoint, CHECKPOINT_FILE, CheckpointError } from '../checkpoint.js';
import { RunFolderError, TrainingInterrupted } from '../errors.js';
import { normalizationStats } from '../images/normalize.js';
import { EVAL_CROP_RATIO } from '../images/transforms.js';
import { type ModelCardInput, writeModelCard } from '../model-card.js';
import { MAX_JSON_BYTES, type Pretrained, loadPretrained, resolvePretrained } from '../pretrained.js';
import { fillPrompt } from '../prompts.js';
import { type RunLock, lockRun, takeRunFolder } from '../run-folder.js';
import { readRegularText } from '../safe-files.js';
import { type TrainConfig, type TrainConfigInput, resolveConfig } from './config.js';
import { type RunData, openRunData } from './data.js';
import { MetricsLog } from './metrics.js';
import { type ResumeInput, earlierStages, prepareResume } from './resume.js';
import { type BestRecord, RunContext, type RunProgress, type TrainHooks, bestEntry, readBest, startProgress } from './run-context.js';
import { type StageReport, runStage } from './stage.js';

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

/**
 * Trains MP-FGVC through both stages into `config.outDir`, or continues the run in `resume` from its
 * checkpoint (with the configuration recorded there) so that every later loss equals the
 * uninterrupted run's. The run folder is locked while it trains (see lockRun).
 */
export async function train(input: TrainConfigInput | ResumeInput, hooks: TrainHooks = {}): Promise<TrainResult> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const say = hooks.log ?? (() => undefined);
  const folder = new RunFolder(hooks.lock);
  let start: { cfg: TrainConfig; ckpt?: LoadedCheckpoint; pretrained?: Pretrained };
  try {
    start = 'resume' in input ? prepareResume(input, folder.take, say) : startFresh(input, folder.take, say);
  } catch (e) {
    folder.release();
    throw e;
  }
  const { cfg, ckpt, pretrained } = start;
  const out = (name: string) => join(cfg.outDir, name);
  const at0 = ckpt?.record.position;
  const willRun = ([1, 2] as const).filter((stage) => (stage === 1 ? cfg.stage1 : cfg.stage2).epochs > 0 && !(at0 && (stage < at0.stage || (stage === at0.stage && at0.stageDone))));
  if (ckpt && willRun.length === 0 && existsSync(out('model.safetensors'))) {
    // A finished run: nothing to train, and nothing of it is rewritten.
    folder.release();
    say(`${cfg.outDir} is complete (stage ${at0!.stage}, step ${at0!.step}); give more epochs to train further`);
    return finishedResult(cfg, ckpt.record, seconds());
  }
  const dev = hooks.device ?? (await requestDevice());
  const metrics = new MetricsLog(out('metrics.jsonl'));
  const progress = startProgress(cfg.outDir, ckpt);
  // Stages finished before this process (a resumed run): their reports as written then.
  const stages: StageReport[] = ckpt ? earlierStages(cfg.outDir, ckpt.record.position) : [];
  let data: RunData | undefined;
  let model: MPFGVC | undefined;
  let status = 'failed';
  let failure: string | undefined;
  try {
    data = openRunData(cfg.data, { imageSize: cfg.model.vision.imageSize, normalization: cfg.normalization, seed: cfg.seed, strict: cfg.strict, ...(hooks.workerUrl ? { workerUrl: hooks.workerUrl } : {}) });
    for (const [path, reason] of Object.entries(ckpt?.record.skipped ?? {})) data.skipped.set(path, reason);
    model = openModel(dev, cfg, data, ckpt, pretrained);
    const run = new RunContext(cfg, hooks, data, model, metrics, progress, seconds);
    if (ckpt) metrics.append({ event: 'resume', stage: ckpt.record.position.stage, step: ckpt.record.position.step, time: seconds() });
    for (const stage of willRun) {
      run.stopIfAsked();
      const report = await runStage(run, stage, stage === at0?.stage ? ckpt : undefined);
      if (report) {
        stages.push(report);
        writeModelCard(cfg.outDir, run.cardInput(stages, false));
      }
    }
    const modelPath = out('model.safetensors');
    writeFileAtomic(modelPath, await model.save());
    const card = run.cardInput(stages, true);
    writeModelCard(cfg.outDir, card);
    status = 'completed';
    say(`done in ${seconds().toFixed(1)} s: ${modelPath}`);
    return {
      outDir: cfg.outDir,
      config: cfg,
      checkpoint: progress.checkpoint,
      model: modelPath,
      metrics: metrics.path,
      summary: out('summary.json'),
      stages,
      skipped: Object.fromEntries(data.skipped),
      skipCount: data.skipCount,
      steps: progress.step,
      seconds: seconds(),
      ...bestEntry(cfg.outDir, progress.best),
      card,
    };
  } catch (e) {
    if (e instanceof TrainingInterrupted) status = 'interrupted';
    failure = (e as Error).message;
    if (e instanceof DeviceLostError) {
      // The GPU's failure, not the run's: what was checkpointed resumes on a working device.
      const p = progress.position;
      const where = p ? `; the checkpoint at stage ${p.stage}, step ${p.step} is kept (resume the run)` : '; no checkpoint had been written';
      throw new DeviceLostError(`${e.message}: training stopped at step ${progress.step}${where}`);
    }
    throw e;
  } finally {
    const summaryFailure = writeSummary(cfg.outDir, { status, failure, progress, stages, data, seconds: seconds() });
    metrics.close();
    model?.dispose();
    await data?.close();
    if (!hooks.device) dev.destroy();
    folder.release();
    if (summaryFailure) throw summaryFailure;
  }
}

/**
 * The run folder as train() holds it. A lock the caller took comes with its own checks of the
 * folder; else train() takes the folder: `fresh` for a new run (refused if it holds one), else the
 * run's own folder.
 */
class RunFolder {
  private lock: RunLock | undefined;

  constructor(private readonly given: RunLock | undefined) {
    this.lock = given;
  }

  readonly take = (dir: string, fresh: { refusal: string } | undefined): void => {
    if (!this.lock) this.lock = fresh ? takeRunFolder(dir, { command: 'train', refusal: fresh.refusal }) : lockRun(dir);
    else if (resolve(this.lock.path, '..') !== resolve(dir)) throw new RunFolderError(`the lock given (${this.lock.path}) is not ${dir}'s`);
  };

  /** Releases the lock train() took (the caller's own stays held). */
  release(): void {
    if (!this.given) this.lock?.release();
  }
}

/** A new run's configuration, its towers' shapes taken from the pretrained checkpoints; records config.json in the folder it takes. */
function startFresh(input: TrainConfigInput, take: RunFolder['take'], say: (line: string) => void): { cfg: TrainConfig; pretrained?: Pretrained } {
  const cfg = resolveConfig(input);
  cfg.outDir = resolve(cfg.outDir);
  let pretrained: Pretrained | undefined;
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
  return pretrained ? { cfg, pretrained } : { cfg };
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

/**
 * The run's model: a new one (its towers from the pretrained checkpoints where given), or the
 * checkpoint's, which must be the model the run's configuration describes.
 */
function openModel(dev: Device, cfg: TrainConfig, data: RunData, ckpt: LoadedCheckpoint | undefined, pretrained: Pretrained | undefined): MPFGVC {
  const modelConfig: MPFGVCConfig = { ...cfg.model, numClasses: data.classes.length, superCategory: data.superCategory };
  const model = ckpt ? MPFGVC.load(dev, ckpt.model, join(cfg.outDir, ckpt.record.model)) : new MPFGVC(dev, new Rng(cfg.seed), modelConfig, promptTokens(cfg, data.superCategory, data.classes));
  try {
    if (pretrained) loadPretrained(model, pretrained);
    // The file alone is enough to use the model: class names and preprocessing ride in it.
    model.info = {
      classes: data.classes,
      normalization: normalizationStats(cfg.normalization),
      cropRatio: EVAL_CROP_RATIO,
      ...(cfg.model.prompts === 'fixed' ? { promptTemplate: cfg.promptTemplate } : {}),
      dataset: cfg.data.kind === 'synth' ? 'synthetic birds' : cfg.data.root,
    };
    if (ckpt && canonicalJson(model.config) !== canonicalJson(modelConfig)) {
      throw new CheckpointError(`${join(cfg.outDir, ckpt.record.model)}: the model's configuration differs from the run's (${JSON.stringify(model.config)} vs ${JSON.stringify(modelConfig)})`);
    }
    return model;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * Writes summary.json, whatever the run's outcome. A run that failed already reports why: a summary
 * that cannot be written must not hide it, so only a completed run's write failure is returned.
 */
function writeSummary(outDir: string, run: { status: string; failure: string | undefined; progress: RunProgress; stages: StageReport[]; data: RunData | undefined; seconds: number }): unknown {
  const { status, failure, progress, stages, data } = run;
  const summary = {
    status,
    ...(failure ? { error: failure } : {}),
    outDir,
    steps: progress.step,
    seconds: run.seconds,
    checkpoint: progress.checkpoint || null,
    stages: stages.map((s) => ({ stage: s.stage, steps: s.steps, seconds: s.seconds, top1: s.eval.top1, top5: s.eval.top5, ...(s.val ? { val: { top1: s.val.top1, top5: s.val.top5, count: s.val.count } } : {}), eval: s.evalJson, confusion: s.confusionCsv })),
    ...bestEntry(outDir, progress.best),
    skippedImages: { count: data?.skipCount ?? 0, files: Object.fromEntries(data?.skipped ?? []) },
  };
  try {
    writeFileAtomic(join(outDir, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
  } catch (e) {
    if (status === 'completed') return e;
  }
  return undefined;
}

/** The result of a run that had already finished (resumed with nothing left to train). */
function finishedResult(cfg: TrainConfig, record: CheckpointRecord, seconds: number): TrainResult {
  const out = (name: string) => join(cfg.outDir, name);
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
    ...bestEntry(cfg.outDir, readBest(cfg.outDir)),
  };
}
