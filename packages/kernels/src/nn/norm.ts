// Differentiable normalisation over the last axis: forward launch and backward rule side by side.
import { launchL2Normalize, launchL2NormalizeBackward, launchLayerNorm, launchLayerNormBackward } from '../ops/norm.js';
import { type Tensor, record } from '../tensor.js';

/** LayerNorm over the last axis with affine weight and bias ([D] each); the tape keeps x, weight, mean and rstd. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const { y, mean, rstd } = launchLayerNorm(x, weight, bias, eps);
  record(
    'layer_norm',
    y,
    [x, weight, bias],
    (g, { needs, pending }) => {
      const [needX, needWeight, needBias] = needs;
      // x is usually a residual stream whose other use has already given it a gradient: add into it.
      const into = needX ? pending(0) : undefined;
      const usable = into && into.offset === 0 ? into : undefined;
      const d = launchLayerNormBackward(g, x, weight, mean, rstd, { dx: needX!, dparams: (needWeight || needBias)! }, usable);
      if (!needWeight) d.dweight?.dispose();
      if (!needBias) d.dbias?.dispose();
      return [d.dx, needWeight ? d.dweight : null, needBias ? d.dbias : null];
    },
    // mean and rstd are disposed below, x may be by the caller: pinned until the rule has run.
    [x, weight, mean, rstd],
  );
  mean.dispose();
  rstd.dispose();
  return y;
}

/** x / max(‖x‖₂, eps) over the last axis; the tape keeps x and the per-row norm. */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  const { y, norm } = launchL2Normalize(x, eps);
  record('l2_normalize', y, [x], (g) => [launchL2NormalizeBackward(g, x, norm, eps)], [x, norm]);
  norm.dispose();
  return y;
}
