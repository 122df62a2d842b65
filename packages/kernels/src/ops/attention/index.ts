export { MAX_HEAD_DIM } from './common.js';
export {
  ATTENTION_KERNELS,
  type AttentionForward,
  type AttentionGrads,
  type AttentionKernel,
  type AttentionOptions,
  attentionKernel,
  launchAttention,
  launchAttentionBackward,
} from './launch.js';
export { launchClsAttentionScores } from './cls-scores.js';
