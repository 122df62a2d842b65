// Model configurations with commented defaults (ViT-B/16 and CLIP ViT-B/16's text tower), and the
// small presets the tests and the demo train.
import { z } from 'zod';
import { issueLine, parseWith } from './schema.js';

export type Activation = 'gelu' | 'quick_gelu';

/** Where the text features T come from. */
export const PROMPT_MODES = ['datp', 'fixed'] as const;
export type PromptMode = (typeof PROMPT_MODES)[number];

/** What stage 1 trains on, and so which heads the model predicts with. */
export const OBJECTIVES = ['mpfgvc', 'vision'] as const;
export type Objective = (typeof OBJECTIVES)[number];

export interface ViTConfig {
  imageSize: number; // input side in pixels (448 for FGVC)
  patchSize: number; // 16
  width: number; // D_v, 768
  depth: number; // 12 transformer blocks
  heads: number; // M, 12
  mlpRatio: number; // 4
  activation: Activation; // 'gelu' (ViT, timm), 'quick_gelu' (OpenAI CLIP)
  preNorm: boolean; // CLIP's vision tower has a LayerNorm before the blocks
  layerNormEps: number; // 1e-6 (timm, HF in21k 1e-12), 1e-5 (CLIP)
  channels: number; // 3
}

export interface TextConfig {
  vocabSize: number; // 49408
  contextLength: number; // 77
  width: number; // D_t, 512
  depth: number; // 12
  heads: number; // 8
  mlpRatio: number; // 4
  activation: Activation; // 'quick_gelu'
  layerNormEps: number; // 1e-5
}

export interface MPFGVCConfig {
  vision: ViTConfig;
  text: TextConfig;
  embedDim: number; // D, the joint space (512)
  numClasses: number; // C
  selectK: number; // SsVP's K, 12
  promptLength: number; // DaTP's J, 16
  superCategory: string; // 'bird', 'dog', 'food', ...
  temperature: number; // τ of the cosine logits, 0.07
  visionHeadOn: 'embedding' | 'projection'; // ŷ_1 = Linear(E_V) (default) or Linear(V)
  /**
   * 'datp' (default): DaTP's learned tokens. 'fixed': the paper's "w/o DaTP" baseline, each
   * class's hand-crafted prompt (PromptTokens.classPrompts, e.g. "a photo of a {class}, a type of
   * bird.") through the frozen text encoder: nothing on the text side trains, T is a constant.
   */
  prompts?: PromptMode;
  /**
   * 'mpfgvc' (default): stage 1 on L_v + L_i2t, stage 2 trains VLFM, four heads. 'vision': the
   * ViT-only baseline, the image encoder and its head trained on L_v alone, no stage 2; the model
   * predicts with the vision head only (its text tower, prompts and VLFM stay untrained).
   */
  objective?: Objective;
}

/** What a configuration without the optional fields means (one that predates them). */
export const MODEL_DEFAULTS: { prompts: PromptMode; objective: Objective } = { prompts: 'datp', objective: 'mpfgvc' };

/** The configuration (a model's, or a run's without the dataset's fields) with the optional fields filled. */
export function withModelDefaults<C extends Pick<MPFGVCConfig, 'prompts' | 'objective'>>(c: C): C & typeof MODEL_DEFAULTS {
  return { ...c, prompts: c.prompts ?? MODEL_DEFAULTS.prompts, objective: c.objective ?? MODEL_DEFAULTS.objective };
}

export const VIT_B16_448: ViTConfig = {
  imageSize: 448,
  patchSize: 16,
  width: 768,
  depth: 12,
  heads: 12,
  mlpRatio: 4,
  activation: 'gelu',
  preNorm: false,
  layerNormEps: 1e-6,
  channels: 3,
};

export const CLIP_TEXT_B16: TextConfig = {
  vocabSize: 49408,
  contextLength: 77,
  width: 512,
  depth: 12,
  heads: 8,
  mlpRatio: 4,
  activation: 'quick_gelu',
  layerNormEps: 1e-5,
};

/** CLIP ViT-B/16's joint space D (its projection_dim). */
export const CLIP_B16_EMBED_DIM = 512;

export function numPatches(v: ViTConfig): number {
  const side = v.imageSize / v.patchSize;
  return side * side;
}

/** A configuration that cannot describe a model, naming the field at fault. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Bounds on every size a configuration may ask for. They sit far above any published model (ViT-g
 * is 1664 wide and 48 deep; CLIP's vocabulary 49408) and keep a crafted file from asking for
 * terabytes before a single weight is compared.
 */
export const MODEL_LIMITS = {
  imageSize: 8192,
  width: 16384,
  depth: 256,
  heads: 1024,
  mlpRatio: 64,
  channels: 16,
  vocabSize: 1_000_000,
  contextLength: 4096,
  numClasses: 100_000,
  promptLength: 1024,
  superCategory: 256,
} as const;

const int = (lo: number, hi: number) => z.int().min(lo).max(hi);
const eps = z.number().positive().max(1);
const activation = z.enum(['gelu', 'quick_gelu']);

/** Width × mlpRatio must be a whole number of hidden units. */
function mlpCheck(v: { width: number; mlpRatio: number }, ctx: z.RefinementCtx): void {
  if (!Number.isInteger(v.width * v.mlpRatio)) ctx.addIssue({ code: 'custom', path: ['mlpRatio'], message: `width ${v.width} × mlpRatio ${v.mlpRatio} is not a whole number of hidden units`, input: v.mlpRatio });
}

export const vitConfigSchema = z
  .strictObject({
    imageSize: int(1, MODEL_LIMITS.imageSize),
    patchSize: int(1, MODEL_LIMITS.imageSize),
    width: int(1, MODEL_LIMITS.width),
    depth: int(1, MODEL_LIMITS.depth),
    heads: int(1, MODEL_LIMITS.heads),
    mlpRatio: z.number().positive().max(MODEL_LIMITS.mlpRatio),
    activation,
    preNorm: z.boolean(),
    layerNormEps: eps,
    channels: int(1, MODEL_LIMITS.channels),
  })
  .superRefine((v, ctx) => {
    if (v.imageSize % v.patchSize !== 0) ctx.addIssue({ code: 'custom', path: ['imageSize'], message: `${v.imageSize} is not a multiple of patchSize ${v.patchSize}`, input: v.imageSize });
    if (v.width % v.heads !== 0) ctx.addIssue({ code: 'custom', path: ['heads'], message: `width ${v.width} is not divisible by ${v.heads} heads`, input: v.heads });
    mlpCheck(v, ctx);
  });

export const textConfigSchema = z
  .strictObject({
    vocabSize: int(1, MODEL_LIMITS.vocabSize),
    contextLength: int(2, MODEL_LIMITS.contextLength),
    width: int(1, MODEL_LIMITS.width),
    depth: int(1, MODEL_LIMITS.depth),
    heads: int(1, MODEL_LIMITS.heads),
    mlpRatio: z.number().positive().max(MODEL_LIMITS.mlpRatio),
    activation,
    layerNormEps: eps,
  })
  .superRefine((t, ctx) => {
    if (t.width % t.heads !== 0) ctx.addIssue({ code: 'custom', path: ['heads'], message: `width ${t.width} is not divisible by ${t.heads} heads`, input: t.heads });
    mlpCheck(t, ctx);
  });

/** The fields of MPFGVCConfig besides the towers' sizes, as zod shapes (a run's configuration omits the dataset's two). */
export const modelConfigShape = {
  vision: vitConfigSchema,
  text: textConfigSchema,
  embedDim: int(1, MODEL_LIMITS.width),
  numClasses: int(1, MODEL_LIMITS.numClasses),
  selectK: int(0, MODEL_LIMITS.imageSize * MODEL_LIMITS.imageSize),
  promptLength: int(1, MODEL_LIMITS.promptLength),
  superCategory: z.string().max(MODEL_LIMITS.superCategory),
  temperature: z.number().positive().max(1e6),
  visionHeadOn: z.enum(['embedding', 'projection']),
  prompts: z.enum(PROMPT_MODES).optional(),
  objective: z.enum(OBJECTIVES).optional(),
};

/** SsVP cannot keep more patches than the image has. */
export function selectKCheck(c: { vision: ViTConfig; selectK: number }, ctx: z.RefinementCtx): void {
  const n = Number.isInteger(c.vision.imageSize / c.vision.patchSize) ? (c.vision.imageSize / c.vision.patchSize) ** 2 : Infinity;
  if (c.selectK > n) ctx.addIssue({ code: 'custom', path: ['selectK'], message: `SsVP keeps at most the ${n} patches`, input: c.selectK });
}

export const modelConfigSchema = z.strictObject(modelConfigShape).superRefine(selectKCheck);

/** The configuration checked against the schema; throws ConfigError naming `source` and the key. */
export function parseModelConfig(value: unknown, source = 'model config'): MPFGVCConfig {
  return parseWith(modelConfigSchema, value, source, (m) => new ConfigError(m));
}

/** Throws ConfigError, naming the field, when a configuration cannot describe a ViT. */
export function validateViT(v: ViTConfig, source = 'vision'): void {
  const r = vitConfigSchema.safeParse(v, { reportInput: true });
  if (!r.success) throw new ConfigError(`${source}.${issueLine(r.error)}`);
}

/** Throws ConfigError, naming the field, when a configuration cannot describe a text encoder. */
export function validateText(t: TextConfig, source = 'text'): void {
  const r = textConfigSchema.safeParse(t, { reportInput: true });
  if (!r.success) throw new ConfigError(`${source}.${issueLine(r.error)}`);
}
