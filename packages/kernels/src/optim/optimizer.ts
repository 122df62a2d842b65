// What every optimiser shares: the parameter list with per-parameter weight-decay flags, state
// tensors per parameter (allocated once, updated in place by fused kernels), a per-parameter step
// count, and export/import of that state as host arrays for checkpoints.
import { zeroGrad } from '../autograd.js';
import { launchFill } from '../ops/elementwise.js';
import type { Device } from '../runtime.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';

/** A parameter with its weight-decay flag given explicitly. */
export interface ParamEntry {
  param: Tensor;
  decay: boolean;
}

export type ParamList = readonly (Tensor | ParamEntry)[];

export interface ParamSlot {
  readonly param: Tensor;
  readonly decay: boolean;
  /** Steps taken with a gradient (PyTorch counts per parameter: a step without a gradient skips it). */
  step: number;
  readonly buffers: Record<string, Tensor>;
}

export interface OptimizerState {
  /** Which optimiser wrote it, so that a checkpoint cannot load into the wrong one. */
  kind: string;
  params: { name: string; step: number; buffers: Record<string, Float32Array> }[];
}

/**
 * Decay predicate for the usual practice: no weight decay on biases, normalisation weights,
 * embeddings (token, position, class) — names as in CLIP and timm ViT checkpoints.
 */
export function decayWeightsOnly(name: string): boolean {
  return !/bias$|(^|[._])(ln|norm)[^.]*\.weight$|pos_embed|positional_embedding|token_embedding|class_embedding|cls_token/.test(name);
}

export abstract class Optimizer {
  /** Learning rate of the next step; schedules set it before each step. */
  lr: number;
  readonly slots: ParamSlot[];
  protected readonly device: Device;

  protected constructor(
    readonly kind: string,
    params: ParamList,
    lr: number,
    decay: ((name: string) => boolean) | undefined,
    bufferNames: readonly string[],
  ) {
    if (params.length === 0) throw new Error(`${kind}: no parameters`);
    this.lr = lr;
    const seen = new Set<Tensor>();
    this.slots = params.map((entry) => {
      const param = 'param' in entry ? entry.param : entry;
      if (seen.has(param)) throw new Error(`${kind}: parameter ${param} is listed twice`);
      seen.add(param);
      if (param.dtype !== 'f32' || !param.isContiguous()) throw new Error(`${kind}: parameter ${param} must be a contiguous f32 tensor`);
      const buffers: Record<string, Tensor> = {};
      for (const b of bufferNames) {
        const t = empty(param.device, [param.size], 'f32', `${kind}.${b}:${param.name}`);
        launchFill(t, 0);
        buffers[b] = t;
      }
      return { param, decay: 'param' in entry ? entry.decay : decay ? decay(param.name) : true, step: 0, buffers };
    });
    this.device = this.slots[0]!.param.device;
  }

  /** Updates every parameter that has a gradient, in place. */
  abstract step(): void;

  /** Drops the gradients (their buffers go back to the pool; the next backward starts from zero). */
  zeroGrad(): void {
    zeroGrad(this.slots.map((s) => s.param));
  }

  /** The optimiser state as host arrays (reads it back; flushes recorded work). */
  async state(): Promise<OptimizerState> {
    const params: OptimizerState['params'] = [];
    for (const s of this.slots) {
      const buffers: Record<string, Float32Array> = {};
      for (const [k, t] of Object.entries(s.buffers)) buffers[k] = (await t.read()) as Float32Array;
      params.push({ name: s.param.name, step: s.step, buffers });
    }
    return { kind: this.kind, params };
  }

  /** Restores state written by state() for the same parameter list. */
  loadState(state: OptimizerState): void {
    if (state.kind !== this.kind) throw new Error(`${this.kind}.loadState: state was written by ${state.kind}`);
    if (state.params.length !== this.slots.length) {
      throw new Error(`${this.kind}.loadState: state has ${state.params.length} parameters, optimiser has ${this.slots.length}`);
    }
    state.params.forEach((p, i) => {
      const s = this.slots[i]!;
      const what = `${this.kind}.loadState: parameter ${i} ${s.param}`;
      if (p.name !== s.param.name) throw new Error(`${what}: state is for '${p.name}'`);
      const names = Object.keys(s.buffers);
      if (Object.keys(p.buffers).sort().join() !== [...names].sort().join()) {
        throw new Error(`${what}: state buffers [${Object.keys(p.buffers).join(', ')}], expected [${names.join(', ')}]`);
      }
      for (const k of names) {
        if (p.buffers[k]!.length !== s.param.size) throw new Error(`${what}: buffer ${k} has ${p.buffers[k]!.length} values for shape ${shapeStr(s.param.shape)}`);
      }
    });
    state.params.forEach((p, i) => {
      const s = this.slots[i]!;
      s.step = p.step;
      for (const [k, t] of Object.entries(s.buffers)) this.device.upload(t.buffer, t.offset * 4, p.buffers[k]!);
    });
  }

  /** Frees the state tensors. */
  dispose(): void {
    for (const s of this.slots) for (const t of Object.values(s.buffers)) t.dispose();
  }
}
