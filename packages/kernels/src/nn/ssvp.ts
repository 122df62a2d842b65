// SsVP (subcategory-specific vision prompt) token selection as a differentiable op: the gradient
// flows through the gathered tokens back to CLS and the selected positions, never to the scores.
import { launchTopK, launchTopKGather, launchTopKScatter } from '../ops/topk.js';
import { type Tensor, record } from '../tensor.js';

/**
 * Indices (B, K) i32 of the K largest scores of each row of (B, N), in ascending index order;
 * ties go to the lower index; NaN ranks below every number (NaNs among themselves by index).
 */
export function topk(scores: Tensor, k: number): Tensor {
  return launchTopK(scores, k);
}

/**
 * The last ViT layer's input under SsVP: from x (B, N+1, D) (token 0 CLS, patch j token j+1) and
 * scores (B, N), `tokens` (B, K+1, D) = [CLS; the K top-scoring patch tokens in ascending patch
 * order] and `ids` (B, K). Differentiable in x only.
 */
export function ssvpSelect(x: Tensor, scores: Tensor, k: number): { tokens: Tensor; ids: Tensor } {
  const { tokens, ids } = launchTopKGather(x, scores, k);
  const n = scores.shape[1]!;
  record('ssvp_select', tokens, [x], (g) => [launchTopKScatter(g, ids, n)], [ids]);
  return { tokens, ids };
}
