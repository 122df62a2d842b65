// Patch embedding, the convolution with kernel = stride = patch that opens a ViT, as im2col
// followed by a matmul with the weight viewed as (D, C·P·P).
import { launchCol2im, launchIm2col } from '../ops/patch.js';
import { type Tensor, record } from '../tensor.js';

/** Patches (B, N, C·P·P) of images (B, C, H, W), N = ⌊H/P⌋·⌊W/P⌋ in row-major grid order. */
export function im2col(images: Tensor, patch: number): Tensor {
  const shape = [...images.shape];
  return record('im2col', launchIm2col(images, patch), [images], (g) => [launchCol2im(g, shape, patch)]);
}
