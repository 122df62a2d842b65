// SGD with momentum, dampening, Nesterov and L2 weight decay, as PyTorch's torch.optim.SGD.
import { launchSgd, launchSgdArena } from '../ops/optim.js';
import { Optimizer, type OptimizerOptions, type ParamList } from './optimizer.js';

export interface SgdOptions extends OptimizerOptions {
  lr: number;
  /** Default 0 (no momentum buffer is kept). */
  momentum?: number;
  /** Default 0. */
  dampening?: number;
  /** Default false; needs momentum > 0 and dampening 0. */
  nesterov?: boolean;
  /** L2 penalty for parameters with decay on; default 0. */
  weightDecay?: number;
  /** Decay flag of parameters given as plain tensors, from their names; default: all decay. */
  decay?: (name: string) => boolean;
}

export class SGD extends Optimizer {
  readonly momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecay: number;

  constructor(params: ParamList, opts: SgdOptions) {
    const momentum = opts.momentum ?? 0;
    super('sgd', params, opts.lr, opts.decay, momentum !== 0 ? ['momentum'] : [], opts);
    this.momentum = momentum;
    this.dampening = opts.dampening ?? 0;
    this.nesterov = opts.nesterov ?? false;
    this.weightDecay = opts.weightDecay ?? 0;
    if (this.nesterov && (momentum <= 0 || this.dampening !== 0)) {
      throw new Error(`sgd: nesterov needs momentum > 0 and dampening 0, got momentum ${momentum}, dampening ${this.dampening}`);
    }
  }

  step(): void {
    const active = this.slots.map((s) => s.param.grad !== null);
    const fused = this.arenaUpdate(active, (k) => {
      const s = this.slots[k]!;
      return [this.lr, s.decay ? this.weightDecay : 0, s.step === 0 ? 1 : 0, 0];
    });
    if (fused) launchSgdArena(fused, { momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov });
    for (const [k, s] of this.slots.entries()) {
      if (!active[k]) continue;
      if (!fused) {
        launchSgd(s.param, s.param.grad!, s.buffers.momentum ?? null, {
          lr: this.lr,
          weightDecay: s.decay ? this.weightDecay : 0,
          momentum: this.momentum,
          dampening: this.dampening,
          nesterov: this.nesterov,
          first: s.step === 0,
        });
      }
      s.step++;
    }
  }
}
