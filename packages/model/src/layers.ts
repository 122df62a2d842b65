// The two layers every tower shares, named as PyTorch names them (`weight`, `bias`).
import { type Device, type MatmulActivation, type Rng, type Tensor, layerNorm, linear } from '@mpfgvc/kernels';
import { type Init, Module } from './module.js';

/** y = x·Wᵀ + b with W (out, in), optionally followed by a fused activation. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias?: Tensor;

  constructor(dev: Device, rng: Rng, nin: number, nout: number, opts: { bias?: boolean; init?: Init } = {}) {
    super(dev, rng);
    // Variance-preserving N(0, 1/nin) rather than ViT's fixed 0.02: at the widths trained from
    // scratch here (32-64) 0.02 leaves attention uniform for hundreds of steps, and the synthetic
    // birds' small parts sat at chance for half of the demo; loaded checkpoints are unaffected.
    this.weight = this.param('weight', [nout, nin], opts.init ?? { normal: 1 / Math.sqrt(nin) });
    if (opts.bias ?? true) this.bias = this.param('bias', [nout], 'zeros');
  }

  /** With `residual`, returns residual + the layer's output, added in the matmul's epilogue. */
  forward(x: Tensor, activation?: MatmulActivation, residual?: Tensor): Tensor {
    return linear(x, this.weight, this.bias, activation, residual);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(
    dev: Device,
    rng: Rng,
    dim: number,
    readonly eps: number,
  ) {
    super(dev, rng);
    this.weight = this.param('weight', [dim], 'ones');
    this.bias = this.param('bias', [dim], 'zeros');
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}
