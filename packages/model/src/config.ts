// Model configurations with commented defaults (ViT-B/16 and CLIP ViT-B/16's text tower), and the
// small presets the tests and the demo train.

export type Activation = 'gelu' | 'quick_gelu';

/** Where the text features T come from. */
export type PromptMode = 'datp' | 'fixed';

/** What stage 1 trains on, and so which heads the model predicts with. */
export type Objective = 'mpfgvc' | 'vision';

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

/** The configuration with the optional fields filled (a configuration without them predates them). */
export function withModelDefaults(c: MPFGVCConfig): MPFGVCConfig {
  return { ...c, prompts: c.prompts ?? 'datp', objective: c.objective ?? 'mpfgvc' };
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

export function numPatches(v: ViTConfig): number {
  const side = v.imageSize / v.patchSize;
  return side * side;
}

/** Throws, naming the field, when a configuration cannot describe a model. */
export function validateViT(v: ViTConfig): void {
  if (v.imageSize % v.patchSize !== 0) throw new Error(`vision.imageSize ${v.imageSize} is not a multiple of vision.patchSize ${v.patchSize}`);
  if (v.width % v.heads !== 0) throw new Error(`vision.width ${v.width} is not divisible by vision.heads ${v.heads}`);
  for (const k of ['imageSize', 'patchSize', 'width', 'depth', 'heads', 'mlpRatio', 'channels'] as const) {
    if (!(Number.isInteger(v[k]) && v[k] > 0)) throw new Error(`vision.${k} must be a positive integer, got ${v[k]}`);
  }
}
