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
    (g) => {
      const r = launchVlfmBackward(q0, k0, v0, kt, vt, probs, g, { ...opts, text: kt.requiresGrad || vt.requiresGrad });
      const pick = (x: Tensor, gx: Tensor | null) => (x.requiresGrad ? gx : (gx?.dispose(), null));
      return [pick(q0, r.dq0), pick(k0, r.dk0), pick(v0, r.dv0), pick(kt, r.dkt), pick(vt, r.dvt)];
    },
    [q0, k0, v0, kt, vt, probs],
  );
  probs.dispose();
  return out;
}
