// VLFM, the vision-language fusion module (docs/method.md §7): the image's joint embedding queries the
// C+1 keys [its own; the C class text embeddings] through shared position-wise projections (the
// paper's 1×1 convolutions), a translation layer refines the fused vector, a linear head classifies.
import { type Device, type Rng, type Tensor, vlfmAttention } from '@mpfgvc/kernels';
import { Linear } from './layers.js';
import { Module } from './module.js';

export class VLFM extends Module {
  private readonly q: Linear;
  private readonly k: Linear;
  private readonly v: Linear;
  private readonly fc1: Linear;
  private readonly fc2: Linear;
  private readonly head: Linear;

  constructor(
    device: Device,
    rng: Rng,
    readonly dim: number, // D, the joint space
    readonly numClasses: number, // C
  ) {
    super(device, rng);
    // PyTorch's default init of Conv1d/Linear: U(±1/√fan_in) weights; biases zero here.
    const affine = (name: string, nout: number, nin: number) => this.child(name, new Linear(device, rng, nin, nout, { init: { uniform: 1 / Math.sqrt(nin) } }));
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
    const kt = this.k.forward(text);
    const vt = this.v.forward(text);
    const fused = vlfmAttention(this.q.forward(image), this.k.forward(image), this.v.forward(image), kt, vt); // E'_V (B, D), softmax scaled by 1/√D
    const translated = this.fc2.forward(this.fc1.forward(fused, 'gelu')); // Ê_V (B, D)
    return this.head.forward(translated);
  }
}
