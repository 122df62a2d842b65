// Patch embedding, the convolution with kernel = stride = patch that opens a ViT, as im2col
// followed by a matmul with the weight viewed as (D, C·P·P).
import { reshape } from '../functional.js';
import { launchCol2im, launchIm2col } from '../ops/patch.js';
import { type Tensor, record, shapeStr } from '../tensor.js';
import { linear } from './matmul.js';

/** Patches (B, N, C·P·P) of images (B, C, H, W), N = ⌊H/P⌋·⌊W/P⌋ in row-major grid order. */
export function im2col(images: Tensor, patch: number): Tensor {
  const shape = [...images.shape];
  return record('im2col', launchIm2col(images, patch), [images], (g) => [launchCol2im(g, shape, patch)]);
}

/**
 * Conv2d(C → D, kernel = stride = patch) of images (B, C, H, W) with weight (D, C, P, P) and bias
 * (D), returned as tokens (B, N, D) in row-major grid order — what a ViT's patch_embed and
 * flatten(2).transpose(1, 2) give.
 */
export function patchEmbed(images: Tensor, weight: Tensor, bias: Tensor | undefined, patch: number): Tensor {
  const [d, c, kh, kw] = weight.shape;
  if (weight.rank !== 4 || kh !== patch || kw !== patch || images.rank !== 4 || images.shape[1] !== c || (bias && (bias.rank !== 1 || bias.shape[0] !== d))) {
    throw new Error(`patchEmbed: images ${shapeStr(images.shape)}, weight ${shapeStr(weight.shape)}, bias ${bias ? shapeStr(bias.shape) : 'none'} do not fit patch ${patch} (weight (D, C, P, P), bias (D))`);
  }
  const cols = im2col(images, patch); // (B, N, C·P·P)
  const w = reshape(weight, [d!, c! * patch * patch]); // (D, C·P·P)
  const out = linear(cols, w, bias); // (B, N, D)
  cols.dispose();
  w.dispose();
  return out;
}
