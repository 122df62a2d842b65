// VLFM cross-modal attention as a differentiable op. The tape keeps the inputs and the (B, C+1)
// probabilities; the text gradients are summed over the batch inside the kernel, so kt and vt
// are (C, D) inputs shared by every image, not broadcast copies.
import { type VlfmOptions, launchVlfm, launchVlfmBackward } from '../ops/vlfm.js';
import { type Tensor, record } from '../tensor.js';

export type { VlfmOptions } from '../ops/vlfm.js';

/**
 * E'_V (B, D): for each image b, softmax over the C+1 scores scale·q0[b]·[k0[b]; kt] of the
 * values [v0[b]; vt]. q0, k0, v0: (B, D); kt, vt: (C, D); scale defaults to 1/√D.
 */
export function vlfmAttention(q0: Tensor, k0: Tensor, v0: Tensor, kt: Tensor, vt: Tensor, opts: VlfmOptions = {}): Tensor {
  const { out, probs } = launchVlfm(q0, k0, v0, kt, vt, opts);
  record(
    'vlfm_attention',
    out,
    [q0, k0, v0, kt, vt],
    (g, { needs }) => {
      const r = launchVlfmBackward(q0, k0, v0, kt, vt, probs, g, { ...opts, text: needs[3] || needs[4] });
      return [r.dq0, r.dk0, r.dv0, r.dkt, r.dvt].map((gx, k) => (needs[k] ? gx : (gx?.dispose(), null)));
    },
    [q0, k0, v0, kt, vt, probs],
  );
  probs.dispose();
  return out;
}
