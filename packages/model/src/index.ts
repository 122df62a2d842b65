export * from './config.js';
export * from './module.js';
export * from './weights/safetensors.js';
export { ClipTokenizer, type TokenBatch, TokenizerError } from './tokenizer.js';
export { VLFM } from './vlfm.js';
