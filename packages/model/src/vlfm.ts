// VLFM, the vision-language fusion module (DESIGN.md §1): the image's joint embedding queries the
// C+1 keys [its own; the C class text embeddings] through shared position-wise projections (the
// paper's 1×1 convolutions), a translation layer refines the fused vector, a linear head classifies.
import { type Device, type Rng, type Tensor, linear, vlfmAttention } from '@mpfgvc/kernels';
import { Module } from './module.js';

interface Affine {
  weight: Tensor;
  bias: Tensor;
}

export class VLFM extends Module {
  private readonly q: Affine;
  private readonly k: Affine;
  private readonly v: Affine;
  private readonly fc1: Affine;
  private readonly fc2: Affine;
  private readonly head: Affine;

  constructor(
    device: Device,
    rng: Rng,
    readonly dim: number, // D, the joint space
    readonly numClasses: number, // C
  ) {
    super(device, rng);
    // PyTorch's default init of Conv1d/Linear: U(±1/√fan_in) weights; biases zero here.
    const affine = (name: string, nout: number, nin: number): Affine => ({
      weight: this.param(`${name}.weight`, [nout, nin], { uniform: 1 / Math.sqrt(nin) }),
      bias: this.param(`${name}.bias`, [nout], 'zeros'),
    });
    this.q = affine('q', dim, dim);
    this.k = affine('k', dim, dim);
    this.v = affine('v', dim, dim);
    this.fc1 = affine('trans.fc1', 4 * dim, dim);
    this.fc2 = affine('trans.fc2', dim, 4 * dim);
    this.head = affine('head', numClasses, dim);
  }

  /** ŷ_2 (B, C) from the image embeddings V (B, D) and the class text embeddings T (C, D). */
  forward(image: Tensor, text: Tensor): Tensor {
    // The text keys and values do not depend on the image: computed once, shared by the batch.
    const kt = linear(text, this.k.weight, this.k.bias);
    const vt = linear(text, this.v.weight, this.v.bias);
    const q0 = linear(image, this.q.weight, this.q.bias);
    const k0 = linear(image, this.k.weight, this.k.bias);
    const v0 = linear(image, this.v.weight, this.v.bias);
    const fused = vlfmAttention(q0, k0, v0, kt, vt); // E'_V (B, D), softmax scaled by 1/√D
    const hidden = linear(fused, this.fc1.weight, this.fc1.bias, 'gelu'); // (B, 4D)
    const translated = linear(hidden, this.fc2.weight, this.fc2.bias); // Ê_V (B, D)
    return linear(translated, this.head.weight, this.head.bias);
  }
}
