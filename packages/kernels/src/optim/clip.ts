// Global gradient norm and clipping over a parameter list, entirely on the GPU.
import { launchClipScale, launchGlobalNorm } from '../ops/optim.js';
import type { Tensor } from '../tensor.js';
import { arenaOfGradient } from './arena.js';

/**
 * The gradients of `params`: one tensor, the gradient arena, when they are exactly an optimiser's
 * arena with every gradient in its slot (one pass instead of one per parameter), else each.
 */
function grads(op: string, params: Iterable<Tensor>): Tensor[] {
  const list = [...params];
  if (list.length === 0) throw new Error(`${op}: no parameters`);
  const first = list[0]!.grad;
  const arena = first ? arenaOfGradient(first) : undefined;
  if (arena?.coversAll(list)) return [arena.grads];
  return list.flatMap((p) => (p.grad ? [p.grad] : []));
}

/** ‖all gradients‖₂ as a scalar tensor (shape []); parameters without a gradient count as zero. */
export function gradNorm(params: Iterable<Tensor>): Tensor {
  const list = [...params];
  const gs = grads('gradNorm', list);
  return launchGlobalNorm(list[0]!.device, gs);
}

/**
 * Scales every gradient in place by min(1, maxNorm / (norm + 1e-6)) — the factor is computed and
 * read on the GPU, no read-back — and returns the norm before clipping (a scalar tensor).
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): Tensor {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  const list = [...params];
  const gs = grads('clipGradNorm', list);
  const norm = launchGlobalNorm(list[0]!.device, gs);
  launchClipScale(gs, norm, maxNorm);
  return norm;
}
