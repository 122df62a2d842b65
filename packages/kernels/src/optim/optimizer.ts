// What every optimiser shares: the parameter list with per-parameter weight-decay flags, state
// tensors per parameter (allocated once, updated in place by fused kernels), a per-parameter step
// count, and export/import of that state as host arrays for checkpoints.
import { zeroGrad } from '../autograd.js';
import { launchCopy, launchFill } from '../ops/elementwise.js';
import type { ArenaUpdate } from '../ops/optim.js';
import type { Device } from '../runtime.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { ParameterArena } from './arena.js';

/** A parameter with its weight-decay flag given explicitly. */
export interface ParamEntry {
  param: Tensor;
  decay: boolean;
}

export type ParamList = readonly (Tensor | ParamEntry)[];

export interface OptimizerOptions {
  /**
   * Pack the parameters, their gradients and the state into arenas and update them all in one
   * dispatch (default true); false keeps one buffer and one dispatch per parameter (the unfused
   * form the tests compare against).
   */
  fused?: boolean;
}

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

  /** The arena the parameters live in (fused optimisers). */
  readonly arena: ParameterArena | undefined;
  /** Whole-arena state tensors by name (fused optimisers). */
  private readonly arenaState: Record<string, Tensor> = {};

  protected constructor(
    readonly kind: string,
    params: ParamList,
    lr: number,
    decay: ((name: string) => boolean) | undefined,
    bufferNames: readonly string[],
    opts: OptimizerOptions = {},
  ) {
    if (params.length === 0) throw new Error(`${kind}: no parameters`);
    this.lr = lr;
    const seen = new Set<Tensor>();
    const list = params.map((entry) => {
      const param = 'param' in entry ? entry.param : entry;
      if (seen.has(param)) throw new Error(`${kind}: parameter ${param} is listed twice`);
      seen.add(param);
      if (param.dtype !== 'f32' || !param.isContiguous()) throw new Error(`${kind}: parameter ${param} must be a contiguous f32 tensor`);
      return { param, decay: 'param' in entry ? entry.decay : decay ? decay(param.name) : true };
    });
    this.arena = opts.fused === false ? undefined : new ParameterArena(list.map((e) => e.param));
    const arena = this.arena;
    for (const b of bufferNames) if (arena) this.arenaState[b] = arena.state(`${kind}.${b}`);
    this.slots = list.map(({ param, decay: d }, k) => {
      const buffers: Record<string, Tensor> = {};
      for (const b of bufferNames) {
        if (arena) buffers[b] = arena.view(this.arenaState[b]!, k);
        else {
          const t = empty(param.device, [param.size], 'f32', `${kind}.${b}:${param.name}`);
          launchFill(t, 0);
          buffers[b] = t;
        }
      }
      return { param, decay: d, step: 0, buffers };
    });
    this.device = this.slots[0]!.param.device;
  }

  /**
   * The fused update's inputs for the parameters that have a gradient (`segment(k)` gives
   * parameter k's four step scalars); a gradient assigned by hand rather than left in its arena
   * slot by backward is copied there first. Undefined without an arena.
   */
  protected arenaUpdate(active: readonly boolean[], segment: (k: number) => [number, number, number, number]): ArenaUpdate | undefined {
    const arena = this.arena;
    if (!arena) return undefined;
    const segments = new Float32Array(4 * this.slots.length);
    this.slots.forEach((s, k) => {
      if (!active[k]) return;
      if (!arena.gradInSlot(k)) {
        const g = s.param.grad!;
        if (g.dtype !== 'f32' || g.size !== s.param.size) throw new Error(`${this.kind}: gradient ${g} for parameter ${s.param}`);
        const gc = g.isContiguous() ? g : launchCopy(g);
        const slot = s.param.gradSlot!;
        this.device.copy(gc.buffer, gc.offset * 4, slot.buffer, slot.offset * 4, slot.size * 4);
        if (gc !== g) gc.dispose();
      }
      segments.set(segment(k), 4 * k);
    });
    return { values: arena.values, grads: arena.grads, state: Object.values(this.arenaState), work: arena.workList(active), segments };
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

  /** Frees the state tensors (and the arena's handles; the parameters keep their values). */
  dispose(): void {
    for (const s of this.slots) for (const t of Object.values(s.buffers)) t.dispose();
    for (const t of Object.values(this.arenaState)) t.dispose();
    this.arena?.dispose();
  }
}
