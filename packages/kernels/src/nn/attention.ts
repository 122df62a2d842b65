// Differentiable fused attention. The tape keeps q, k, v, the output and the per-row LSE (no
// probabilities); backward recomputes what it needs in two kernels.
import { type AttentionOptions, launchAttention, launchAttentionBackward, launchClsAttentionScores } from '../ops/attention/index.js';
import { type Tensor, record } from '../tensor.js';

export type { AttentionOptions } from '../ops/attention/index.js';

/**
 * softmax(scale·q·kᵀ, masked)·v over (B, H, N, d) views (unit stride over d; any strides over
 * B, H, N, so q, k, v may be views of one (B, N, 3, H, d) projection). Returns `out`, (B, H, Nq, d)
 * stored as (B, Nq, H, d) — `permute(out, [0, 2, 1, 3])` is contiguous, so merging heads is a
 * free reshape — and `lse` (B, H, Nq), the natural log-sum-exp of each row, which
 * `clsAttentionScores` reuses. `lse` carries no gradient.
 */
export function attentionWithLse(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): { out: Tensor; lse: Tensor } {
  const { out, lse } = launchAttention(q, k, v, opts);
  // Saved tensors are pinned by the tape: the caller may dispose q, k, v (and lse) before backward.
  record(
    'attention',
    out,
    [q, k, v],
    (g) => {
      const grads = launchAttentionBackward(q, k, v, out, lse, g, opts);
      const pick = (x: Tensor, gx: Tensor) => (x.requiresGrad ? gx : (gx.dispose(), null));
      return [pick(q, grads.dq), pick(k, grads.dk), pick(v, grads.dv)];
    },
    [q, k, v, out, lse],
  );
  return { out, lse };
}

/** Fused multi-head attention; see `attentionWithLse`. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const { out, lse } = attentionWithLse(q, k, v, opts);
  lse.dispose();
  return out;
}

/**
 * SsVP scores (B, N): per image, the CLS query's attention probabilities over the N patch keys,
 * summed over heads, recomputed from q, k and the LSE that `attentionWithLse` returned (same
 * scale). Not differentiable: TopK consumes it.
 */
export function clsAttentionScores(q: Tensor, k: Tensor, lse: Tensor, opts: { scale?: number } = {}): Tensor {
  return launchClsAttentionScores(q, k, lse, opts);
}
