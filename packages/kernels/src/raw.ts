// The layer under the differentiable ops: the kernel launchers, which record nothing on the tape,
// and `record`, which registers a backward rule. For benchmarks, kernel tests and new ops; models
// use the ops of the main entry, whose gradients are tested.
export { type BackwardContext, type BackwardRule, type Node, record } from './tensor.js';
export { BINARY, type BinaryOp, UNARY, type UnaryOp, launchAccumulate, launchAssign, launchBinary, launchCopy, launchFill, launchUnary } from './ops/elementwise.js';
export { launchSum } from './ops/reduce.js';
export { launchCast } from './ops/cast.js';
export { launchGatherRows, launchScatterAddRows } from './ops/gather.js';
export { type LayerNormGrads, type LayerNormOut, launchL2Normalize, launchL2NormalizeBackward, launchLayerNorm, launchLayerNormBackward } from './ops/norm.js';
export { type SoftmaxKind, launchSoftmax, launchSoftmaxBackward } from './ops/softmax.js';
export { type CrossEntropyOut, launchCrossEntropy, launchCrossEntropyBackward } from './ops/loss.js';
export { launchMatmul, launchMatmulWithPre, launchMatmulWithRowSum } from './ops/matmul/index.js';
export { type AttentionForward, type AttentionGrads, launchAttention, launchAttentionBackward, launchClsAttentionScores } from './ops/attention/index.js';
export { launchTopK, launchTopKGather, launchTopKScatter } from './ops/topk.js';
export { type VlfmGrads, launchVlfm, launchVlfmBackward } from './ops/vlfm.js';
export { launchCol2im, launchIm2col } from './ops/patch.js';
export { type AdamWStep, type SgdStep, launchAdamW, launchClipScale, launchGlobalNorm, launchSgd } from './ops/optim.js';
