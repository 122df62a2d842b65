// The architectures the project trains and measures, in one place: the command line's --model
// presets, the demo, the benchmarks and the tests take them from here (a test's variant is a
// spread of one of them). The dataset decides numClasses and superCategory.
import { CLIP_B16_EMBED_DIM, CLIP_TEXT_B16, type MPFGVCConfig, VIT_B16_448 } from './config.js';

export type ModelPreset = Omit<MPFGVCConfig, 'numClasses' | 'superCategory'>;

/**
 * The demo's small MP-FGVC, trained from scratch on 32-pixel synthetic birds: 4-pixel patches
 * (a 64-wide token keeps all 48 values of a patch), and a text tower whose vocabulary is the
 * super-category, SOT and EOT (a fixed random map of the DaTP tokens).
 */
export const DEMO_MODEL: ModelPreset = {
  vision: { imageSize: 32, patchSize: 4, width: 64, depth: 4, heads: 4, mlpRatio: 2, activation: 'gelu', preNorm: false, layerNormEps: 1e-6, channels: 3 },
  text: { vocabSize: 3, contextLength: 16, width: 64, depth: 2, heads: 2, mlpRatio: 2, activation: 'quick_gelu', layerNormEps: 1e-5 },
  embedDim: 64,
  selectK: 12,
  promptLength: 3,
  temperature: 0.07,
  visionHeadOn: 'embedding',
};

const TEXT_SMALL = { vocabSize: 512, contextLength: 77, width: 64, depth: 2, heads: 2, mlpRatio: 4, activation: 'quick_gelu' as const, layerNormEps: 1e-5 };

/** A toy ViT (32², 8-pixel patches, width 64, depth 4): per-dispatch costs dominate its step. */
export const TINY_MODEL: ModelPreset = {
  vision: { imageSize: 32, patchSize: 8, width: 64, depth: 4, heads: 4, mlpRatio: 4, activation: 'gelu', preNorm: false, layerNormEps: 1e-6, channels: 3 },
  text: TEXT_SMALL,
  embedDim: 64,
  selectK: 4,
  promptLength: 4,
  temperature: 0.07,
  visionHeadOn: 'embedding',
};

/** The paper's setting: ViT-B/16 at 448 with CLIP B/16's text tower, K = 12, J = 16. */
export const VIT_B16_MODEL: ModelPreset = {
  vision: VIT_B16_448,
  text: CLIP_TEXT_B16,
  embedDim: CLIP_B16_EMBED_DIM,
  selectK: 12,
  promptLength: 16,
  temperature: 0.07,
  visionHeadOn: 'embedding',
};

/** ViT-Ti/16 at 224 (197 tokens, width 192, depth 12) with a small text tower; K and J the paper's. */
export const VIT_TINY_224_MODEL: ModelPreset = {
  ...VIT_B16_MODEL,
  vision: { ...VIT_B16_448, imageSize: 224, width: 192, heads: 3 },
  text: { ...TEXT_SMALL, width: 256, depth: 4, heads: 4 },
  embedDim: 256,
};

/**
 * The unit tests' model: towers 16 wide, so a test trains it for a few steps in seconds on a
 * software adapter; its three-token vocabulary is the super-category, SOT and EOT (a test with a
 * tokenizer takes the tokenizer's). Tests take their variants from it with spreads. Not a --model
 * preset.
 */
export const TEST_MODEL: ModelPreset = {
  vision: { imageSize: 16, patchSize: 4, width: 16, depth: 3, heads: 2, mlpRatio: 2, activation: 'gelu', preNorm: false, layerNormEps: 1e-6, channels: 3 },
  text: { vocabSize: 3, contextLength: 16, width: 16, depth: 2, heads: 2, mlpRatio: 2, activation: 'quick_gelu', layerNormEps: 1e-5 },
  embedDim: 12,
  selectK: 5,
  promptLength: 3,
  temperature: 0.07,
  visionHeadOn: 'embedding',
};

/** By name, as `mpfgvc train --model <name>` takes them. */
export const MODEL_PRESETS: Record<string, ModelPreset> = {
  demo: DEMO_MODEL,
  tiny: TINY_MODEL,
  'vit-tiny-224': VIT_TINY_224_MODEL,
  'vit-b16': VIT_B16_MODEL,
};
