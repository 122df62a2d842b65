// The configuration of a training run, with commented defaults. `resolveConfig` fills the
// defaults and checks every field, naming the one at fault; the result is what a run records in
// config.json and in each checkpoint (the "effective" configuration).
import { z } from 'zod';
import { MODEL_DEFAULTS, type MPFGVCConfig, type Objective, type PromptTokens, modelConfigShape, parseWith, promptTokensSchema, selectKCheck, withModelDefaults } from '@mpfgvc/model';
import { type InputNormalization, NORMALIZATION_NAMES } from '../images/normalize.js';
import type { PretrainedFolders } from '../pretrained.js';
import { DATASET_NAMES, type DatasetKind } from '../datasets/dataset.js';
import { ConfigurationError } from '../errors.js';
import { FIXED_PROMPT_TEMPLATE, validatePromptTemplate } from '../prompts.js';
import { MAX_BIRD_CLASSES } from '../synth/birds.js';

export const OPTIMIZERS = ['adamw', 'sgd'] as const;

export interface StageConfig {
  epochs: number; // stage 1: 30, stage 2: 10
  batchSize: number; // 32
  /** Batches whose gradients are summed (each scaled by 1/accumulate) before one optimiser step. */
  accumulate: number; // 1
  optimizer: (typeof OPTIMIZERS)[number]; // 'adamw'
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
      /**
       * Validation images per class, generated apart from train and test (another seed): the
       * evaluations during training and the choice of best.safetensors use them. 0: none.
       */
      valPerClass: number; // 10
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
      /**
       * The share of each class's training images held out (seeded) for validation: the
       * evaluations during training and the choice of best.safetensors use them, the test split
       * only the end of each stage. 0 trains on the whole training split (the paper's protocol).
       */
      valFraction: number; // 0.1
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
  /** A checkpoint every N optimiser steps (0: none by steps). Stage ends always checkpoint. */
  checkpointEvery: number; // 0
  /** A checkpoint at the end of every N-th epoch (0: none by epochs). */
  checkpointEpochs: number; // 1
  /** A checkpoint once this many minutes have passed since the last one (0: none by time). */
  checkpointMinutes: number; // 10
  /** A metrics row every N optimiser steps. */
  logEvery: number; // 1
  /** Evaluate on the test split every N epochs within a stage (0: only at each stage's end). */
  evalEvery: number; // 0
  evalBatchSize: number; // 64
  /** An unreadable image stops the run instead of being skipped. */
  strict: boolean; // false
  /** Unreadable images are skipped until more than this fraction of the dataset (train + test) is; then the run stops. */
  maxSkippedFraction: number; // 0.05
}

type StageInput = Partial<StageConfig>;
type DataInput =
  | { kind: 'synth'; numClasses?: number; trainPerClass?: number; testPerClass?: number; valPerClass?: number; seed?: number; fresh?: boolean }
  | { kind: 'folder'; root: string; format?: DatasetKind | 'auto'; superCategory?: string; workers?: number; cropScale?: [number, number]; valFraction?: number };

export interface TrainConfigInput extends Partial<Omit<TrainConfig, 'data' | 'stage1' | 'stage2' | 'outDir' | 'model'>> {
  outDir: string;
  data: DataInput;
  model: TrainConfig['model'];
  stage1?: StageInput;
  stage2?: StageInput;
}

// The defaults, one object per part of the configuration: resolveConfig fills them in and the
// command line's help shows them.
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

/**
 * A stage's defaults. Stage 2 trains fewer epochs and without augmentation (so the run can cache
 * the frozen image embeddings once); the ViT-only objective has no stage 2.
 */
export function stageDefaults(stage: 1 | 2, objective: Objective = MODEL_DEFAULTS.objective): StageConfig {
  if (stage === 1) return { ...STAGE_DEFAULTS };
  return { ...STAGE_DEFAULTS, epochs: objective === 'vision' ? 0 : 10, augment: false };
}

export const SYNTH_DATA_DEFAULTS: Omit<Extract<DataConfig, { kind: 'synth' }>, 'kind'> = { numClasses: 24, trainPerClass: 30, testPerClass: 10, valPerClass: 10, seed: 0, fresh: false };

export const FOLDER_DATA_DEFAULTS: Omit<Extract<DataConfig, { kind: 'folder' }>, 'kind' | 'root' | 'superCategory'> = { format: 'auto', workers: 1, cropScale: [0.08, 1], valFraction: 0.1 };

/** The run's own fields. */
export const TRAIN_DEFAULTS: Omit<TrainConfig, 'outDir' | 'data' | 'model' | 'tokenizer' | 'pretrained' | 'promptTokens' | 'stage1' | 'stage2'> = {
  seed: 0,
  normalization: 'imagenet',
  promptTemplate: FIXED_PROMPT_TEMPLATE,
  checkpointEvery: 0,
  checkpointEpochs: 1,
  checkpointMinutes: 10,
  logEvery: 1,
  evalEvery: 0,
  evalBatchSize: 64,
  strict: false,
  maxSkippedFraction: 0.05,
};

const int = (lo: number, hi: number) => z.int().min(lo).max(hi);
const finite = (lo: number, hi: number) => z.number().min(lo).max(hi);

const stageSchema = z
  .strictObject({
    epochs: int(0, 100_000),
    batchSize: int(1, 65_536),
    accumulate: int(1, 4096),
    optimizer: z.enum(OPTIMIZERS),
    lr: z.number().min(0),
    minLr: z.number().min(0),
    warmupEpochs: finite(0, 100_000),
    weightDecay: finite(0, 10),
    momentum: finite(0, 0.999999),
    clipNorm: finite(0, 1e6),
    labelSmoothing: finite(0, 0.999),
    augment: z.boolean(),
  })
  .partial();

const dataSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('synth'),
    numClasses: int(2, MAX_BIRD_CLASSES).optional(),
    trainPerClass: int(1, 100_000).optional(),
    testPerClass: int(1, 100_000).optional(),
    valPerClass: int(0, 100_000).optional(),
    seed: int(0, 0xffffffff).optional(),
    fresh: z.boolean().optional(),
  }),
  z.strictObject({
    kind: z.literal('folder'),
    root: z.string().min(1),
    format: z.enum(['auto', ...(Object.keys(DATASET_NAMES) as DatasetKind[])]).optional(),
    superCategory: z.string().max(256).optional(),
    workers: int(0, 64).optional(),
    cropScale: z.tuple([finite(1e-6, 1), finite(1e-6, 1)]).optional(),
    valFraction: finite(0, 0.5).optional(),
  }),
]);

const positive = z.number().positive();
const { numClasses: _numClasses, superCategory: _superCategory, ...runModelShape } = modelConfigShape;

/**
 * Every key of TrainConfigInput. A resolved TrainConfig parses too: it is what config.json and
 * checkpoint.json hold, and what a resumed run reads back.
 */
export const trainConfigSchema = z.strictObject({
  outDir: z.string().min(1),
  seed: int(0, 0xffffffff).optional(),
  data: dataSchema,
  model: z.strictObject(runModelShape).superRefine(selectKCheck),
  normalization: z.union([z.enum(NORMALIZATION_NAMES), z.strictObject({ mean: z.tuple([z.number(), z.number(), z.number()]), std: z.tuple([positive, positive, positive]) })]).optional(),
  tokenizer: z.string().min(1).optional(),
  pretrained: z.strictObject({ vision: z.string().min(1).optional(), text: z.string().min(1).optional() }).optional(),
  promptTokens: promptTokensSchema.optional(),
  promptTemplate: z.string().max(1000).optional(),
  stage1: stageSchema.optional(),
  stage2: stageSchema.optional(),
  checkpointEvery: int(0, 1e9).optional(),
  checkpointEpochs: int(0, 1e9).optional(),
  checkpointMinutes: finite(0, 1e6).optional(),
  logEvery: int(1, 1e9).optional(),
  evalEvery: int(0, 1e9).optional(),
  evalBatchSize: int(1, 65_536).optional(),
  strict: z.boolean().optional(),
  maxSkippedFraction: finite(0, 1).optional(),
});

function resolveStage(name: string, s: StageInput, defaults: StageConfig): StageConfig {
  const c: StageConfig = { ...defaults, ...s };
  if (c.minLr > c.lr) throw new ConfigurationError(`config: ${name}.minLr must lie in [0, lr ${c.lr}], got ${c.minLr}`);
  return c;
}

function resolveData(d: DataInput): DataConfig {
  if (d.kind === 'synth') {
    const s = SYNTH_DATA_DEFAULTS;
    return { kind: 'synth', numClasses: d.numClasses ?? s.numClasses, trainPerClass: d.trainPerClass ?? s.trainPerClass, testPerClass: d.testPerClass ?? s.testPerClass, valPerClass: d.valPerClass ?? s.valPerClass, seed: d.seed ?? s.seed, fresh: d.fresh ?? s.fresh };
  }
  const f = FOLDER_DATA_DEFAULTS;
  const c: DataConfig = { kind: 'folder', root: d.root, format: d.format ?? f.format, workers: d.workers ?? f.workers, cropScale: d.cropScale ?? [...f.cropScale], valFraction: d.valFraction ?? f.valFraction };
  if (d.superCategory !== undefined) c.superCategory = d.superCategory;
  if (c.cropScale[0] > c.cropScale[1]) throw new ConfigurationError(`config: data.cropScale must satisfy lo <= hi, got [${c.cropScale}]`);
  return c;
}

/**
 * The configuration with defaults filled and every field checked (types, ranges, unknown keys),
 * the one at fault named. `source` names where it came from in errors ('config', or a file).
 */
export function resolveConfig(raw: TrainConfigInput, source = 'config'): TrainConfig {
  const input = parseWith(trainConfigSchema, raw, source, (m) => new ConfigurationError(m)) as TrainConfigInput;
  const model = withModelDefaults(input.model);
  const visionOnly = model.objective === 'vision';
  const d = TRAIN_DEFAULTS;
  const c: TrainConfig = {
    outDir: input.outDir,
    seed: input.seed ?? d.seed,
    data: resolveData(input.data),
    model,
    normalization: input.normalization ?? d.normalization,
    promptTemplate: input.promptTemplate ?? d.promptTemplate,
    stage1: resolveStage('stage1', input.stage1 ?? {}, stageDefaults(1)),
    stage2: resolveStage('stage2', input.stage2 ?? {}, stageDefaults(2, model.objective)),
    checkpointEvery: input.checkpointEvery ?? d.checkpointEvery,
    checkpointEpochs: input.checkpointEpochs ?? d.checkpointEpochs,
    checkpointMinutes: input.checkpointMinutes ?? d.checkpointMinutes,
    logEvery: input.logEvery ?? d.logEvery,
    evalEvery: input.evalEvery ?? d.evalEvery,
    evalBatchSize: input.evalBatchSize ?? d.evalBatchSize,
    strict: input.strict ?? d.strict,
    maxSkippedFraction: input.maxSkippedFraction ?? d.maxSkippedFraction,
  };
  if (input.tokenizer !== undefined) c.tokenizer = input.tokenizer;
  if (input.pretrained?.vision || input.pretrained?.text) c.pretrained = { ...input.pretrained };
  if (input.promptTokens !== undefined) c.promptTokens = input.promptTokens;
  if (!c.tokenizer && !c.promptTokens) throw new ConfigurationError(`${source}: give tokenizer (a CLIP tokenizer.json) or promptTokens for the DaTP prompts`);
  validatePromptTemplate(c.promptTemplate);
  if (model.prompts === 'fixed' && !c.tokenizer && !Array.isArray(c.promptTokens?.classPrompts)) {
    throw new ConfigurationError(`${source}: model.prompts 'fixed' needs tokenizer (each class's prompt from promptTemplate) or promptTokens.classPrompts (each class's prompt ids)`);
  }
  if (visionOnly && c.stage2.epochs > 0) {
    throw new ConfigurationError(`${source}: stage2.epochs must be 0 with model.objective 'vision' (the ViT-only baseline trains L_v alone and has no VLFM stage), got ${c.stage2.epochs}`);
  }
  return c;
}

/**
 * A configuration recorded by a run (checkpoint.json, config.json) as input to resolveConfig. Runs
 * recorded before validation splits existed trained on the whole training split and had none:
 * they keep that on resume rather than taking today's defaults.
 */
export function recordedConfig(recorded: unknown): TrainConfigInput {
  const c = recorded as TrainConfigInput;
  if (typeof c !== 'object' || c === null || typeof c.data !== 'object' || c.data === null) return c;
  if (c.data.kind === 'synth' && c.data.valPerClass === undefined) return { ...c, data: { ...c.data, valPerClass: 0 } };
  if (c.data.kind === 'folder' && c.data.valFraction === undefined) return { ...c, data: { ...c.data, valFraction: 0 } };
  return c;
}

