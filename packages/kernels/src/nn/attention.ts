// Differentiable fused attention. The tape keeps q, k, v, the output and the per-row LSE (no
// probabilities); backward recomputes what it needs from them.
import { launchFill } from '../ops/elementwise.js';
import { type AttentionOptions, launchAttention, launchAttentionBackward, launchClsAttentionScores } from '../ops/attention/index.js';
import { type Tensor, empty, record, shapeStr } from '../tensor.js';

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

export interface QkvAttentionOptions {
  /** Only the first `queries` rows attend (1: the CLS row alone); keys and values cover all T rows. Default T. */
  queries?: number;
  /** Also return SsVP's scores from the same forward (see `clsAttentionScores`). */
  scores?: boolean;
}

export interface QkvAttentionOutput {
  /** (B, queries, D), the heads merged. */
  out: Tensor;
  /** (B, T − 1) when asked for: the CLS query's probabilities over the other T − 1 keys, summed over heads; no gradient. */
  scores?: Tensor;
}

/**
 * Multi-head self-attention over q, k, v read in place from one projection qkv (B, T, 3D) —
 * viewed as (B, T, 3, H, d) and permuted to (B, H, T, d) by strides alone — with scale 1/√d and
 * no mask. One tape entry for all three operands, so the backward writes dq, dk and dv straight
 * into one dqkv (B, T, 3D) instead of summing three zero-padded gradients.
 */
export function qkvAttention(qkv: Tensor, heads: number, opts: QkvAttentionOptions = {}): QkvAttentionOutput {
  const [B, T, D3] = qkv.shape as [number, number, number];
  const D = D3 / 3;
  const d = D / heads;
  if (qkv.rank !== 3 || !qkv.isContiguous() || !Number.isInteger(d) || d < 1) {
    throw new Error(`qkvAttention: qkv must be a contiguous (B, T, 3D) with D divisible by ${heads} heads, got ${shapeStr(qkv.shape)}`);
  }
  const queries = opts.queries ?? T;
  if (!Number.isInteger(queries) || queries < 1 || queries > T) throw new Error(`qkvAttention: queries ${queries} outside [1, ${T}] for qkv ${shapeStr(qkv.shape)}`);
  const strides = [T * D3, d, D3, 1];
  const q = qkv.view([B, heads, queries, d], strides, qkv.offset);
  const k = qkv.view([B, heads, T, d], strides, qkv.offset + D);
  const v = qkv.view([B, heads, T, d], strides, qkv.offset + 2 * D);
  const { out, lse } = launchAttention(q, k, v); // (B, H, queries, d) stored as (B, queries, H, d)
  const scores = opts.scores ? launchClsAttentionScores(q, k, lse) : undefined;
  const merged = out.view([B, queries, D], [queries * D, D, 1], out.offset);
  // q, k, v, out and lse are pinned by the tape entry, so the rule may use them after the disposals below.
  record(
    'qkv_attention',
    merged,
    [qkv],
    (g) => {
      // dQ, dK and dV written straight into their places in dqkv (B, T, 3, H, d), as q, k, v were read.
      const dqkv = empty(qkv.device, [B, T, D3], 'f32', 'qkv_attention_grad');
      if (queries < T) launchFill(dqkv, 0);
      const into = { dq: dqkv.view([B, heads, queries, d], strides, 0), dk: dqkv.view([B, heads, T, d], strides, D), dv: dqkv.view([B, heads, T, d], strides, 2 * D) };
      const dOut = g.view([B, heads, queries, d], [g.strides[0]!, d * g.strides[2]!, g.strides[1]!, g.strides[2]!], g.offset); // (B, H, queries, d)
      launchAttentionBackward(q, k, v, out, lse, dOut, {}, into);
      for (const t of [dOut, into.dq, into.dk, into.dv]) t.dispose();
      return [dqkv];
    },
    [q, k, v, out, lse],
  );
  for (const t of [q, k, v, out, lse]) t.dispose();
  return scores ? { out: merged, scores } : { out: merged };
}
