// AdamW (Loshchilov & Hutter) with decoupled weight decay, as PyTorch's torch.optim.AdamW.
import { launchAdamW } from '../ops/optim.js';
import { Optimizer, type ParamList } from './optimizer.js';

export interface AdamWOptions {
  lr: number;
  /** (β1, β2); default (0.9, 0.999). */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay for parameters with decay on; default 0.01. */
  weightDecay?: number;
  /** Decay flag of parameters given as plain tensors, from their names; default: all decay. */
  decay?: (name: string) => boolean;
}

export class AdamW extends Optimizer {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;

  constructor(params: ParamList, opts: AdamWOptions) {
    super('adamw', params, opts.lr, opts.decay, ['m', 'v']);
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  step(): void {
    for (const s of this.slots) {
      const g = s.param.grad;
      if (!g) continue;
      s.step++;
      launchAdamW(s.param, g, s.buffers.m!, s.buffers.v!, {
        lr: this.lr,
        beta1: this.beta1,
        beta2: this.beta2,
        eps: this.eps,
        weightDecay: s.decay ? this.weightDecay : 0,
        step: s.step,
      });
    }
  }
}
