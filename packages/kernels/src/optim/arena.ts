// One buffer for every parameter an optimiser updates, one for their gradients and one per state
// (m, v, momentum), all in the same layout: the update of a whole stage is then one dispatch over
// a work list of ranges, instead of one dispatch per parameter tensor (56 for the demo's ViT), and
// the global gradient norm one pass over one buffer.
//
// The parameters are moved onto the arena (Tensor.rebind) when the optimiser is made; backward
// copies each parameter's first gradient into its slot of the gradient arena (Tensor.gradSlot)
// and accumulates the others there, so no gradient is copied at step time.
import type { Device } from '../runtime.js';
import { type Tensor, contiguousStrides, empty } from '../tensor.js';
import { launchFill } from '../ops/elementwise.js';

const arenas = new WeakMap<object, ParameterArena>();

/** The arena whose gradient buffer `grad` lies in, if any. */
export function arenaOfGradient(grad: Tensor): ParameterArena | undefined {
  return arenas.get(grad.storage);
}

/** Parameter offsets are multiples of this (vec4 loads). */
const ALIGN = 4;
/** vec4 units one workgroup of the update kernels covers (its invocation count). */
export const ARENA_CHUNK4 = 256;

export class ParameterArena {
  readonly device: Device;
  readonly offsets: number[];
  readonly total: number;
  /** The parameters' values (each parameter is a view of it). */
  readonly values: Tensor;
  /** The gradient slots, zero where no parameter lies. */
  readonly grads: Tensor;
  private work: { key: string; list: Uint32Array } | undefined;

  constructor(readonly params: readonly Tensor[]) {
    this.device = params[0]!.device;
    let at = 0;
    this.offsets = params.map((p) => {
      const o = at;
      at += Math.ceil(p.size / ALIGN) * ALIGN;
      return o;
    });
    this.total = Math.max(ALIGN, at);
    this.values = empty(this.device, [this.total], 'f32', 'arena.values');
    launchFill(this.values, 0);
    this.grads = empty(this.device, [this.total], 'f32', 'arena.grads');
    launchFill(this.grads, 0);
    arenas.set(this.grads.storage, this);
    params.forEach((p, k) => {
      const o = this.offsets[k]!;
      this.device.copy(p.buffer, p.offset * 4, this.values.buffer, o * 4, p.size * 4);
      p.rebind(this.values.storage, o);
      p.gradSlot?.dispose();
      p.gradSlot = this.view(this.grads, k);
    });
  }

  /** A zero-filled state buffer in the arena's layout. */
  state(label: string): Tensor {
    const t = empty(this.device, [this.total], 'f32', label);
    launchFill(t, 0);
    return t;
  }

  /** Parameter k's part of an arena-wide tensor, shaped like the parameter. */
  view(whole: Tensor, k: number): Tensor {
    const p = this.params[k]!;
    return whole.view(p.shape, contiguousStrides(p.shape), whole.offset + this.offsets[k]!);
  }

  /** True when parameter k's gradient is its slot of the gradient arena (what backward leaves there). */
  gradInSlot(k: number): boolean {
    const g = this.params[k]!.grad;
    return g !== null && g.storage === this.grads.storage && g.offset === this.grads.offset + this.offsets[k]! && g.isContiguous();
  }

  /**
   * Work items (segment, first vec4, end vec4, 0) covering the parameters in `active`, each at
   * most ARENA_CHUNK4 vec4s of one parameter; cached while the active set does not change.
   */
  workList(active: readonly boolean[]): Uint32Array {
    const key = active.map((a) => (a ? 1 : 0)).join('');
    if (this.work?.key === key) return this.work.list;
    const items: number[] = [];
    this.params.forEach((p, k) => {
      if (!active[k]) return;
      const start = this.offsets[k]! / 4;
      const end = start + Math.ceil(p.size / 4);
      for (let s = start; s < end; s += ARENA_CHUNK4) items.push(k, s, Math.min(end, s + ARENA_CHUNK4), 0);
    });
    this.work = { key, list: Uint32Array.from(items) };
    return this.work.list;
  }

  /**
   * True when `params` are exactly this arena's parameters and each has its gradient in its slot:
   * the gradient arena then holds every gradient and nothing stale (padding is zero).
   */
  coversAll(params: readonly Tensor[]): boolean {
    if (params.length !== this.params.length) return false;
    const mine = new Set(this.params);
    return params.every((p) => mine.has(p)) && this.params.every((_, k) => this.gradInSlot(k));
  }

  /** Frees the arena's own handles; the parameters keep their values' storage alive. */
  dispose(): void {
    for (const p of this.params) {
      if (p.gradSlot && p.gradSlot.storage === this.grads.storage) {
        p.gradSlot.dispose();
        p.gradSlot = null;
      }
    }
    this.values.dispose();
    this.grads.dispose();
  }
}
