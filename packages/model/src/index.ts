export * from './config.js';
export * from './weights/safetensors.js';
