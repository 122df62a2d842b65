// AdamW (Loshchilov & Hutter) with decoupled weight decay, as PyTorch's torch.optim.AdamW.
import { launchAdamW, launchAdamWArena } from '../ops/optim.js';
import { Optimizer, type OptimizerOptions, type ParamList } from './optimizer.js';

export interface AdamWOptions extends OptimizerOptions {
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
    super('adamw', params, opts.lr, opts.decay, ['m', 'v'], opts);
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  step(): void {
    const active = this.slots.map((s) => s.param.grad !== null);
    for (const [k, s] of this.slots.entries()) if (active[k]) s.step++;
    const fused = this.arenaUpdate(active, (k) => {
      const s = this.slots[k]!;
      return [this.lr / (1 - this.beta1 ** s.step), Math.sqrt(1 - this.beta2 ** s.step), 1 - this.lr * (s.decay ? this.weightDecay : 0), 0];
    });
    if (fused) {
      launchAdamWArena(fused, { beta1: this.beta1, beta2: this.beta2, eps: this.eps });
      return;
    }
    for (const [k, s] of this.slots.entries()) {
      if (!active[k]) continue;
      launchAdamW(s.param, s.param.grad!, s.buffers.m!, s.buffers.v!, {
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
