// Tensor: a view (shape, strides, offset, dtype) over a reference-counted storage that owns one
// pooled GPUBuffer. Views share storage; the buffer returns to the pool when the last view goes.
import type { Device } from './runtime.js';

export type DType = 'f32' | 'f16' | 'i32' | 'u32';

export function dtypeBytes(d: DType): number {
  return d === 'f16' ? 2 : 4;
}

export type Shape = readonly number[];

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export class Storage {
  private refs = 1;

  constructor(
    readonly device: Device,
    readonly buffer: GPUBuffer,
    readonly bytes: number,
  ) {}

  retain(): this {
    if (this.refs <= 0) throw new Error(`storage '${this.buffer.label}' used after it was freed`);
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.device.pool.release(this.buffer);
    if (this.refs < 0) throw new Error(`storage '${this.buffer.label}' released twice`);
  }

  get alive(): boolean {
    return this.refs > 0;
  }

  /** More than one handle views this storage: writing in place would change the others. */
  get shared(): boolean {
    return this.refs > 1;
  }
}

/** What a backward rule is told besides its output's gradient. */
export interface BackwardContext {
  /** needs[k]: input k required a gradient when the op was recorded (the rule returns null for the others). */
  readonly needs: readonly boolean[];
  /**
   * The gradient input k has already gathered from its other uses, when it may be written in
   * place: a rule that adds its contribution into it (a kernel that accumulates) returns that
   * tensor for input k, and no separate accumulation runs.
   */
  pending(k: number): Tensor | undefined;
}

/**
 * Returns the gradient of each input (null where none is needed), given the output's gradient.
 * A rule reads the tensors it needs from its own closure, captured when the op was recorded.
 */
export type BackwardRule = (grad: Tensor, ctx: BackwardContext) => (Tensor | null)[];

/** A backward rule recorded on the tape for one op. */
export interface Node {
  readonly op: string;
  /** The op's inputs, in order; entries that need no gradient are null. */
  readonly inputs: (Tensor | null)[];
  backward: BackwardRule;
  /**
   * The tensors the rule captured, pinned: they stay usable until it ran (or the tape is freed),
   * even if disposed meanwhile. Kept here only to unpin them.
   */
  saved: Tensor[];
  /** Creation order: backward runs in reverse of it. */
  readonly seq: number;
}

// ---- scopes: deterministic release of everything an expression created ----

const scopes: Set<Tensor>[] = [];

function track(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Removes tensors from the enclosing scope's tracking: they outlive it. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<Tensor>): void {
  if (value instanceof Tensor) out.add(value);
  else if (Array.isArray(value)) for (const v of value) collect(v, out);
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out);
  }
}

/**
 * Runs `fn` and disposes every tensor it created except those it returns (in an array or plain
 * object too), which move to the enclosing scope. Saved tensors of tape entries stay alive until
 * their backward runs.
 */
export function scope<T>(fn: () => T): T {
  const s = new Set<Tensor>();
  scopes.push(s);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of s) if (!kept.has(t)) t.dispose();
  for (const t of kept) if (s.has(t)) track(t);
  return result;
}

// ---- gradient mode ----

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording anything on the tape. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

let nextSeq = 0;
let nextId = 0;

export class Tensor {
  readonly id = nextId++;
  requiresGrad = false;
  /** Accumulated gradient (leaves only, and tensors with retainGrad). */
  grad: Tensor | null = null;
  /** The tape entry that produced this tensor, while it may still be needed for backward. */
  node: Node | null = null;
  retainGrad = false;
  /** Human-readable name (parameter name), used in error messages. */
  name = '';
  /**
   * Where this parameter's gradient lives when an optimiser packed it into an arena (a view of
   * the arena's gradient buffer): backward copies the first contribution there and accumulates
   * the rest, so that one dispatch updates every parameter.
   */
  gradSlot: Tensor | null = null;
  private disposed = false;
  /** Tape entries that need this tensor; dispose() waits for them. */
  private pins = 0;
  private disposeRequested = false;

  constructor(
    readonly storage: Storage,
    readonly shape: Shape,
    readonly strides: readonly number[],
    /** Offset into the storage, in elements. */
    readonly offset: number,
    readonly dtype: DType,
  ) {
    track(this);
  }

  get device(): Device {
    return this.storage.device;
  }

  get buffer(): GPUBuffer {
    if (this.disposed) throw new Error(`tensor${this.name ? ` '${this.name}'` : ''} ${shapeStr(this.shape)} used after dispose()`);
    return this.storage.buffer;
  }

  get size(): number {
    return numel(this.shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  isContiguous(): boolean {
    let acc = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== acc) return false;
      acc *= this.shape[i]!;
    }
    return true;
  }

  /** A new handle on the same storage (another reference; dispose each). */
  view(shape: Shape, strides: readonly number[], offset: number): Tensor {
    return new Tensor(this.storage.retain(), shape, strides, offset, this.dtype);
  }

  /**
   * Moves this tensor onto `storage` at element `offset`, where its values must already be. Only
   * for parameters packed into an optimiser's arena, between steps: views taken before the move
   * keep the old storage (and its old values).
   */
  rebind(storage: Storage, offset: number): void {
    if (!this.isContiguous()) throw new Error(`rebind: ${this} is not contiguous`);
    const old = this.storage;
    const self = this as unknown as { storage: Storage; offset: number };
    self.storage = storage.retain();
    self.offset = offset;
    old.release();
  }

  /** Keeps the tensor usable until unpin(), even across dispose() (for tape entries). */
  pin(): void {
    this.pins++;
  }

  unpin(): void {
    if (--this.pins === 0 && this.disposeRequested) this.dispose();
  }

  dispose(): void {
    if (this.disposed) return;
    if (this.pins > 0) {
      this.disposeRequested = true;
      return;
    }
    this.disposed = true;
    this.storage.release();
    if (this.grad && !this.grad.disposed) this.grad.dispose();
    this.grad = null;
  }

  toString(): string {
    return `Tensor(${this.dtype}${shapeStr(this.shape)}${this.name ? ` '${this.name}'` : ''})`;
  }

  /**
   * Copies the tensor to the host (flushes recorded work). f16 is widened to f32. A strided view
   * comes back as the span of storage it covers, gathered here: the tensor layer runs no kernel.
   */
  async read(): Promise<Float32Array | Int32Array | Uint32Array> {
    const width = dtypeBytes(this.dtype);
    const data = this.isContiguous() || this.size === 0 ? await this.device.read(this.buffer, this.offset * width, this.size * width) : await this.readStrided(width);
    if (this.dtype === 'i32') return new Int32Array(data);
    if (this.dtype === 'u32') return new Uint32Array(data);
    if (this.dtype === 'f16') return f16ToF32(new Uint16Array(data));
    return new Float32Array(data);
  }

  private async readStrided(width: number): Promise<ArrayBuffer> {
    let first = this.offset;
    let last = this.offset;
    for (let i = 0; i < this.rank; i++) {
      const reach = (this.shape[i]! - 1) * this.strides[i]!;
      if (reach < 0) first += reach;
      else last += reach;
    }
    // Buffer copies start at a multiple of 4 bytes.
    const start = Math.floor((first * width) / 4) * 4;
    const span = await this.device.read(this.buffer, start, (last + 1) * width - start);
    const Elements = width === 2 ? Uint16Array : Uint32Array;
    const src = new Elements(span, 0, span.byteLength / width);
    const out = new Elements(this.size);
    const index = new Array<number>(this.rank).fill(0);
    let at = this.offset - start / width;
    for (let k = 0; k < out.length; k++) {
      out[k] = src[at]!;
      for (let i = this.rank - 1; i >= 0; i--) {
        at += this.strides[i]!;
        if (++index[i]! < this.shape[i]!) break;
        at -= this.strides[i]! * this.shape[i]!;
        index[i] = 0;
      }
    }
    return out.buffer;
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item(): tensor ${shapeStr(this.shape)} has ${this.size} elements, not 1`);
    return (await this.read())[0]!;
  }
}

/** A fresh contiguous tensor (uninitialised memory). */
export function empty(device: Device, shape: Shape, dtype: DType = 'f32', label = 'tensor'): Tensor {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${label}: invalid shape ${shapeStr(shape)}`);
  }
  const bytes = Math.max(4, Math.ceil((numel(shape) * dtypeBytes(dtype)) / 4) * 4);
  const storage = new Storage(device, device.pool.acquire(bytes, label), bytes);
  return new Tensor(storage, [...shape], contiguousStrides(shape), 0, dtype);
}

export type HostData = Float32Array | Int32Array | Uint32Array | Uint16Array | readonly number[];

/** A tensor holding `data` (copied), f32 unless a dtype or an integer array says otherwise. */
export function tensor(device: Device, data: HostData, shape?: Shape, opts: { dtype?: DType; requiresGrad?: boolean; name?: string } = {}): Tensor {
  const dtype = opts.dtype ?? (data instanceof Int32Array ? 'i32' : data instanceof Uint32Array ? 'u32' : data instanceof Uint16Array ? 'f16' : 'f32');
  const s = shape ?? [data.length];
  if (numel(s) !== data.length) throw new Error(`tensor${opts.name ? ` '${opts.name}'` : ''}: ${data.length} values do not fill shape ${shapeStr(s)}`);
  let typed: ArrayBufferView;
  if (dtype === 'f32') typed = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  else if (dtype === 'i32') typed = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
  else if (dtype === 'u32') typed = data instanceof Uint32Array ? data : Uint32Array.from(data as ArrayLike<number>);
  else typed = data instanceof Uint16Array ? data : f32ToF16(Float32Array.from(data as ArrayLike<number>));
  const t = empty(device, s, dtype, opts.name || 'tensor');
  device.upload(t.buffer, 0, typed);
  t.requiresGrad = Boolean(opts.requiresGrad);
  t.name = opts.name ?? '';
  return t;
}

/**
 * Registers a tape entry for `out` when gradients are on and some input needs one. `saved` lists
 * the tensors whose contents `backward` reads: they are pinned until it has run.
 */
export function record(op: string, out: Tensor, inputs: readonly Tensor[], backward: BackwardRule, saved: Tensor[] = []): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  out.requiresGrad = true;
  out.node = {
    op,
    inputs: inputs.map((t) => (t.requiresGrad ? t : null)),
    backward,
    saved,
    seq: nextSeq++,
  };
  for (const t of saved) t.pin();
  return out;
}

// ---- half precision conversion on the host ----

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    f32[0] = src[i]!;
    const x = u32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    out[i] = sign | h;
  }
  return out;
}

export function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i]!;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) out[i] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) out[i] = mant ? NaN : sign * Infinity;
    else out[i] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}
