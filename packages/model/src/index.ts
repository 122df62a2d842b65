export * from './config.js';
export * from './module.js';
export * from './weights/safetensors.js';
export {
  type ImagePreprocessing,
  type ViTCheckpointFamily,
  type ViTFamily,
  detectViTFamily,
  parsePreprocessorConfig,
  visualProjection,
  vitConfigFromCheckpoint,
  vitWeightSource,
} from './weights/vit-weights.js';
export { bicubicResize, resizePosEmbed, squareGrid } from './pos-embed.js';
export { DEFAULT_SSVP_K, type ViTForwardOptions, type ViTOutput, VisionTransformer } from './vit.js';
export { ClipTokenizer, type TokenBatch, TokenizerError } from './tokenizer.js';
export { ClipTextEncoder } from './text.js';
export { issueLine, keyPath, parseWith } from './schema.js';
export { Datp, type DatpConfig } from './datp.js';
export { type ClipTextSpec, clipTextWeights, textConfigFromCheckpoint, textConfigFromHf, textConfigFromWeights } from './weights/clip-text.js';
export { VLFM } from './vlfm.js';
export { HEADS, type Head, type LoadOptions, MPFGVC, type ModelInfo, checkModelFile, modelInfoSchema, type Predictions, type PromptTokens, type Stage, type StageLosses, type StageOneOutput, type StageTwoInput, type VisionOutput, promptTokensSchema } from './mpfgvc.js';
export * from './presets.js';
