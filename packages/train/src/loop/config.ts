// The configuration of a training run, with commented defaults. `resolveConfig` fills the
// defaults and checks every field, naming the one at fault; the result is what a run records in
// config.json and in each checkpoint (the "effective" configuration).
import type { InputNormalization } from '../images/preprocess.js';
import type { PretrainedFolders } from '../pretrained.js';
import type { DatasetKind } from '../datasets/dataset.js';
import type { MPFGVCConfig, PromptTokens } from '@mpfgvc/model';
import { FIXED_PROMPT_TEMPLATE, validatePromptTemplate } from '../prompts.js';

export interface StageConfig {
  epochs: number; // stage 1: 30, stage 2: 10
  batchSize: number; // 32
  /** Batches whose gradients are summed (each scaled by 1/accumulate) before one optimiser step. */
  accumulate: number; // 1
  optimizer: 'sgd' | 'adamw'; // 'adamw'
  lr: number; // stage 1: 1e-3, stage 2: 1e-3
  minLr: number; // 0: the cosine's floor
  /** Linear warm-up, in epochs (fractions allowed), rounded to whole steps. */
  warmupEpochs: number; // 1
  /** AdamW's decoupled decay or SGD's L2; never applied to biases, norms, embeddings, DaTP tokens. */
  weightDecay: number; // 0.05
  momentum: number; // SGD only: 0.9
  /** Global gradient-norm clipping; 0 turns it off. */
  clipNorm: number; // 1
  labelSmoothing: number; // 0
  /**
   * Training augmentation: random resized crop + flip for datasets on disk, a horizontal flip for
   * in-memory ones. Off in stage 2 lets the run cache the frozen image embeddings once.
   */
  augment: boolean; // stage 1: true, stage 2: false
}

export type DataConfig =
  | {
      /** The embedded synthetic birds, generated in memory at the model's image size. */
      kind: 'synth';
      numClasses: number; // 24
      trainPerClass: number; // 30
      testPerClass: number; // 10
      seed: number; // 0
      /**
       * Every epoch after the first trains on newly generated images (trainPerClass per class,
       * never a test image): a from-scratch model learns the parts instead of memorising a few
       * hundred pictures. Stage 2 with augmentation off still caches the first epoch's embeddings.
       */
      fresh: boolean; // false
    }
  | {
      /** A dataset on disk, read by the readers of src/datasets through the image pipeline. */
      kind: 'folder';
      root: string;
      format: DatasetKind | 'auto'; // 'auto'
      superCategory?: string; // the dataset's own (required for ImageFolder)
      /** Image worker threads (0: the main thread prepares batches). */
      workers: number; // 1
      /** Random resized crop's area range. */
      cropScale: [number, number]; // [0.08, 1]
    };

export interface TrainConfig {
  /** The run directory: config, metrics, checkpoints, evaluations, summary. */
  outDir: string;
  /** Seeds model initialisation, data order and augmentation. */
  seed: number; // 0
  data: DataConfig;
  /**
   * The model; numClasses and superCategory come from the dataset. Its ablation options:
   * `prompts: 'fixed'` (hand-crafted prompts instead of DaTP: with a tokenizer built from
   * promptTemplate and the dataset's class names, else promptTokens.classPrompts) and
   * `objective: 'vision'` (the ViT-only baseline: stage 1 on L_v alone, no stage 2, evaluation of
   * the vision head only). Both are recorded filled in ('datp', 'mpfgvc' by default).
   */
  model: Omit<MPFGVCConfig, 'numClasses' | 'superCategory'>;
  /** 'imagenet' (default), 'clip', or a checkpoint's {mean, std} (a pretrained vision folder's, when not given). */
  normalization: InputNormalization;
  /** A CLIP tokenizer.json giving the super-category's tokens; or give promptTokens directly. */
  tokenizer?: string;
  /**
   * Published checkpoints the run starts from (a ViT folder, a Hugging Face CLIP folder); their
   * shapes replace `model.vision` / `model.text` / `model.embedDim` when the run starts.
   */
  pretrained?: PretrainedFolders;
  promptTokens?: PromptTokens;
  /** Fixed prompts with a tokenizer: each class's prompt, {class} and {superCategory} filled in. */
  promptTemplate: string; // 'a photo of a {class}, a type of {superCategory}.'
  stage1: StageConfig;
  /** Stage 2's epochs default to 0 for objective 'vision', which refuses any other number. */
  stage2: StageConfig;
  /** A checkpoint every N optimiser steps (0: only at the end of each stage). */
  checkpointEvery: number; // 0
  /** A metrics row every N optimiser steps. */
  logEvery: number; // 1
  /** Evaluate on the test split every N epochs within a stage (0: only at each stage's end). */
  evalEvery: number; // 0
  evalBatchSize: number; // 64
  /** An unreadable image stops the run instead of being skipped. */
  strict: boolean; // false
}

type StageInput = Partial<StageConfig>;
type DataInput = { kind: 'synth'; numClasses?: number; trainPerClass?: number; testPerClass?: number; seed?: number; fresh?: boolean } | { kind: 'folder'; root: string; format?: DatasetKind | 'auto'; superCategory?: string; workers?: number; cropScale?: [number, number] };

export interface TrainConfigInput extends Partial<Omit<TrainConfig, 'data' | 'stage1' | 'stage2' | 'outDir' | 'model'>> {
  outDir: string;
  data: DataInput;
  model: TrainConfig['model'];
  stage1?: StageInput;
  stage2?: StageInput;
}

const STAGE_DEFAULTS: StageConfig = {
  epochs: 30,
  batchSize: 32,
  accumulate: 1,
  optimizer: 'adamw',
  lr: 1e-3,
  minLr: 0,
  warmupEpochs: 1,
  weightDecay: 0.05,
  momentum: 0.9,
  clipNorm: 1,
  labelSmoothing: 0,
  augment: true,
};

function resolveStage(name: string, s: StageInput, defaults: Partial<StageConfig>): StageConfig {
  const c: StageConfig = { ...STAGE_DEFAULTS, ...defaults, ...s };
  const check = (ok: boolean, field: keyof StageConfig, want: string) => {
    if (!ok) throw new Error(`config: ${name}.${field} must be ${want}, got ${JSON.stringify(c[field])}`);
  };
  check(Number.isInteger(c.epochs) && c.epochs >= 0, 'epochs', 'a non-negative integer');
  check(Number.isInteger(c.batchSize) && c.batchSize >= 1, 'batchSize', 'a positive integer');
  check(Number.isInteger(c.accumulate) && c.accumulate >= 1, 'accumulate', 'a positive integer');
  check(c.optimizer === 'sgd' || c.optimizer === 'adamw', 'optimizer', "'sgd' or 'adamw'");
  check(Number.isFinite(c.lr) && c.lr >= 0, 'lr', 'a non-negative number');
  check(Number.isFinite(c.minLr) && c.minLr >= 0 && c.minLr <= c.lr, 'minLr', `in [0, lr]`);
  check(Number.isFinite(c.warmupEpochs) && c.warmupEpochs >= 0, 'warmupEpochs', 'a non-negative number');
  check(Number.isFinite(c.weightDecay) && c.weightDecay >= 0, 'weightDecay', 'a non-negative number');
  check(Number.isFinite(c.momentum) && c.momentum >= 0 && c.momentum < 1, 'momentum', 'in [0, 1)');
  check(Number.isFinite(c.clipNorm) && c.clipNorm >= 0, 'clipNorm', 'a non-negative number (0: off)');
  check(Number.isFinite(c.labelSmoothing) && c.labelSmoothing >= 0 && c.labelSmoothing < 1, 'labelSmoothing', 'in [0, 1)');
  check(typeof c.augment === 'boolean', 'augment', 'true or false');
  return c;
}

function resolveData(d: DataInput): DataConfig {
  if (d.kind === 'synth') {
    const c: DataConfig = { kind: 'synth', numClasses: d.numClasses ?? 24, trainPerClass: d.trainPerClass ?? 30, testPerClass: d.testPerClass ?? 10, seed: d.seed ?? 0, fresh: d.fresh ?? false };
    if (typeof c.fresh !== 'boolean') throw new Error(`config: data.fresh must be true or false, got ${JSON.stringify(c.fresh)}`);
    return c;
  }
  if (d.kind === 'folder') {
    const c: DataConfig = { kind: 'folder', root: d.root, format: d.format ?? 'auto', workers: d.workers ?? 1, cropScale: d.cropScale ?? [0.08, 1] };
    if (d.superCategory !== undefined) c.superCategory = d.superCategory;
    if (typeof c.root !== 'string' || c.root === '') throw new Error(`config: data.root must name the dataset folder`);
    if (!(Number.isInteger(c.workers) && c.workers >= 0)) throw new Error(`config: data.workers must be a non-negative integer, got ${c.workers}`);
    return c;
  }
  throw new Error(`config: data.kind must be 'synth' or 'folder', got ${JSON.stringify((d as { kind: unknown }).kind)}`);
}

function resolveModel(m: TrainConfig['model']): TrainConfig['model'] {
  if (typeof m !== 'object' || m === null) throw new Error('config: model must describe the architecture');
  const c = { ...m, prompts: m.prompts ?? 'datp', objective: m.objective ?? 'mpfgvc' };
  if (c.prompts !== 'datp' && c.prompts !== 'fixed') throw new Error(`config: model.prompts must be 'datp' or 'fixed', got ${JSON.stringify(c.prompts)}`);
  if (c.objective !== 'mpfgvc' && c.objective !== 'vision') throw new Error(`config: model.objective must be 'mpfgvc' or 'vision', got ${JSON.stringify(c.objective)}`);
  return c;
}

export function resolveConfig(input: TrainConfigInput): TrainConfig {
  if (typeof input.outDir !== 'string' || input.outDir === '') throw new Error('config: outDir must name the run directory');
  const model = resolveModel(input.model);
  const visionOnly = model.objective === 'vision';
  const c: TrainConfig = {
    outDir: input.outDir,
    seed: input.seed ?? 0,
    data: resolveData(input.data),
    model,
    normalization: input.normalization ?? 'imagenet',
    promptTemplate: input.promptTemplate ?? FIXED_PROMPT_TEMPLATE,
    stage1: resolveStage('stage1', input.stage1 ?? {}, {}),
    stage2: resolveStage('stage2', input.stage2 ?? {}, { epochs: visionOnly ? 0 : 10, augment: false }),
    checkpointEvery: input.checkpointEvery ?? 0,
    logEvery: input.logEvery ?? 1,
    evalEvery: input.evalEvery ?? 0,
    evalBatchSize: input.evalBatchSize ?? 64,
    strict: input.strict ?? false,
  };
  if (input.tokenizer !== undefined) c.tokenizer = input.tokenizer;
  if (input.pretrained?.vision || input.pretrained?.text) c.pretrained = { ...input.pretrained };
  if (input.promptTokens !== undefined) c.promptTokens = input.promptTokens;
  if (!c.tokenizer && !c.promptTokens) throw new Error('config: give tokenizer (a CLIP tokenizer.json) or promptTokens for the DaTP prompts');
  validatePromptTemplate(c.promptTemplate);
  if (model.prompts === 'fixed' && !c.tokenizer && !Array.isArray(c.promptTokens?.classPrompts)) {
    throw new Error("config: model.prompts 'fixed' needs tokenizer (each class's prompt from promptTemplate) or promptTokens.classPrompts (each class's prompt ids)");
  }
  if (visionOnly && c.stage2.epochs > 0) {
    throw new Error(`config: stage2.epochs must be 0 with model.objective 'vision' (the ViT-only baseline trains L_v alone and has no VLFM stage), got ${c.stage2.epochs}`);
  }
  if (!(Number.isInteger(c.seed) && c.seed >= 0 && c.seed <= 0xffffffff)) throw new Error(`config: seed must be an integer in [0, 2^32), got ${c.seed}`);
  for (const k of ['checkpointEvery', 'evalEvery'] as const) {
    if (!(Number.isInteger(c[k]) && c[k] >= 0)) throw new Error(`config: ${k} must be a non-negative integer, got ${c[k]}`);
  }
  for (const k of ['logEvery', 'evalBatchSize'] as const) {
    if (!(Number.isInteger(c[k]) && c[k] >= 1)) throw new Error(`config: ${k} must be a positive integer, got ${c[k]}`);
  }
  const n = c.normalization;
  const rgb = (v: unknown) => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  if (n !== 'imagenet' && n !== 'clip' && !(typeof n === 'object' && n !== null && rgb(n.mean) && rgb(n.std) && n.std.every((x) => x > 0))) {
    throw new Error(`config: normalization must be 'imagenet', 'clip' or {mean: [r, g, b], std: [r, g, b]} with positive std, got ${JSON.stringify(n)}`);
  }
  return c;
}
