// The main entry: device, tensors, the differentiable ops, autograd and optimisers. The kernel
// launchers and `record` are the raw entry (raw.ts, @mpfgvc/kernels/raw).
export { type AdapterInfo, AdapterError, type DeviceOptions, DeviceLostError, GPUValidationError, OPTIONAL_FEATURES, dawnInstance, listAdapters } from './device.js';
export { type KernelSpec, type ScalarType, type StorageBinding, LINEAR_INDEX, grid1d, kernelKey, kernelSource } from './kernel.js';
export { BufferPool, type PoolStats, sizeClass } from './pool.js';
export { Device, type KernelTime, type Profile, requestDevice } from './runtime.js';
export { WaitPacer, pollGently } from './wait.js';
export {
  type DType,
  type HostData,
  type Shape,
  Storage,
  Tensor,
  contiguousStrides,
  dtypeBytes,
  empty,
  f16ToF32,
  f32ToF16,
  isGradEnabled,
  keep,
  noGrad,
  numel,
  sameShape,
  scope,
  shapeStr,
  tensor,
} from './tensor.js';
export { backward, releaseGraph, sumTo, zeroGrad } from './autograd.js';
export * from './functional.js';
export { type CheckResult, selfCheck } from './self-check.js';
export { Rng } from './rng.js';
export { embedding, gatherRows } from './nn/embedding.js';
export { l2Normalize, layerNorm } from './nn/norm.js';
export { logSoftmax, softmax } from './nn/softmax.js';
export { type CrossEntropyOptions, crossEntropy } from './nn/loss.js';
export { MATMUL_KERNELS, type MatmulActivation, type MatmulKernel, type MatmulOptions, defaultKernel } from './ops/matmul/index.js';
export { fixedSubgroupSize, isCpuAdapter } from './ops/adapter.js';
export { linear, matmul } from './nn/matmul.js';
export { ATTENTION_KERNELS, type AttentionKernel, type AttentionOptions, MAX_HEAD_DIM, attentionKernel } from './ops/attention/index.js';
export { type QkvAttentionOptions, type QkvAttentionOutput, attention, attentionWithLse, clsAttentionScores, qkvAttention } from './nn/attention.js';
export { ssvpSelect, topk } from './nn/ssvp.js';
export { type VlfmOptions, VLFM_MAX_DIM } from './ops/vlfm.js';
export { vlfmAttention } from './nn/vlfm.js';
export { type OptimizerState, type ParamEntry, type ParamList, type ParamSlot, Optimizer, decayWeightsOnly } from './optim/optimizer.js';
export { AdamW, type AdamWOptions } from './optim/adamw.js';
export { SGD, type SgdOptions } from './optim/sgd.js';
export { clipGradNorm, gradNorm } from './optim/clip.js';
export { im2col, patchEmbed } from './nn/patch.js';
