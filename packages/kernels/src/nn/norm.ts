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
    (g, pending) => {
      // The saved views, not the forward's handles: mean and rstd are disposed below, x may be by the caller.
      const [xs, ws, m, r] = y.node!.saved as [Tensor, Tensor, Tensor, Tensor];
      // x is usually a residual stream whose other use has already given it a gradient: add into it.
      const into = x.requiresGrad ? pending(0) : undefined;
      const usable = into && into.offset === 0 ? into : undefined;
      const d = launchLayerNormBackward(g, xs, ws, m, r, { dx: x.requiresGrad, dparams: weight.requiresGrad || bias.requiresGrad }, usable);
      if (!weight.requiresGrad) d.dweight?.dispose();
      if (!bias.requiresGrad) d.dbias?.dispose();
      return [d.dx, weight.requiresGrad ? d.dweight : null, bias.requiresGrad ? d.dbias : null];
    },
    [x, weight, mean, rstd],
  );
  mean.dispose();
  rstd.dispose();
  return y;
}

/** x / max(‖x‖₂, eps) over the last axis; the tape keeps x and the per-row norm. */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  const { y, norm } = launchL2Normalize(x, eps);
  record(
    'l2_normalize',
    y,
    [x],
    (g) => {
      const [xs, ns] = y.node!.saved as [Tensor, Tensor];
      return [launchL2NormalizeBackward(g, xs, ns, eps)];
    },
    [x, norm],
  );
  norm.dispose();
  return y;
}
