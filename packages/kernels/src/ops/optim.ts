// Fused optimiser updates (one pass over a parameter, its gradient and its state) and the global
// gradient norm with clipping. The norm stays on the GPU: per-tensor partial sums of squares,
// one final reduction into a scalar, and a scaling kernel that reads the norm from that buffer,
// so clipping costs no read-back and no pipeline stall.
import { type KernelSpec, LINEAR_INDEX, WORKGROUP_REDUCE_WGSL, floatType, grid1d, vec4Width } from '../kernel.js';
import { type Tensor, empty, sameShape, shapeStr } from '../tensor.js';
import { launchCopy } from './elementwise.js';

const WG = 256;
/** Units (f32 or vec4) summed by one workgroup of the partial norm pass. */
const NORM_CHUNK = WG * 16;


function adamwSpec(width: 1 | 4): KernelSpec {
  const t = floatType(width);
  return {
    name: 'adamw_update',
    variant: t,
    storage: [
      { name: 'P', access: 'read_write', type: `array<${t}>` },
      { name: 'G', access: 'read', type: `array<${t}>` },
      { name: 'M', access: 'read_write', type: `array<${t}>` },
      { name: 'V', access: 'read_write', type: `array<${t}>` },
    ],
    params: [
      ['n', 'u32'],
      ['off_p', 'u32'],
      ['off_g', 'u32'],
      ['decay', 'f32'],
      ['beta1', 'f32'],
      ['beta2', 'f32'],
      ['step_size', 'f32'],
      ['bc2_sqrt', 'f32'],
      ['eps', 'f32'],
    ],
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  let g = G[p.off_g + i];
  let m = p.beta1 * M[i] + (1.0 - p.beta1) * g;
  let v = p.beta2 * V[i] + (1.0 - p.beta2) * g * g;
  M[i] = m;
  V[i] = v;
  let w = P[p.off_p + i] * p.decay;
  P[p.off_p + i] = w - p.step_size * m / (sqrt(v) / p.bc2_sqrt + p.eps);
}`,
  };
}

function sgdSpec(width: 1 | 4, momentum: boolean): KernelSpec {
  const t = floatType(width);
  return {
    name: 'sgd_update',
    variant: `${t}${momentum ? ',momentum' : ''}`,
    storage: [
      { name: 'P', access: 'read_write', type: `array<${t}>` },
      { name: 'G', access: 'read', type: `array<${t}>` },
      ...(momentum ? [{ name: 'Buf', access: 'read_write' as const, type: `array<${t}>` }] : []),
    ],
    params: [
      ['n', 'u32'],
      ['off_p', 'u32'],
      ['off_g', 'u32'],
      ['lr', 'f32'],
      ['wd', 'f32'],
      ['momentum', 'f32'],
      ['dampening', 'f32'],
      ['nesterov', 'u32'],
      ['first', 'u32'],
    ],
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  let w = P[p.off_p + i];
  var g = G[p.off_g + i] + p.wd * w;
${
  momentum
    ? `  var b = g;
  if (p.first == 0u) { b = p.momentum * Buf[i] + (1.0 - p.dampening) * g; }
  Buf[i] = b;
  if (p.nesterov == 1u) { g = g + p.momentum * b; } else { g = b; }`
    : ''
}
  P[p.off_p + i] = w - p.lr * g;
}`,
  };
}

function checkUpdate(op: string, param: Tensor, grad: Tensor, state: Tensor[]): Tensor {
  if (param.dtype !== 'f32' || !param.isContiguous()) throw new Error(`${op}: parameter ${param} must be contiguous f32`);
  if (grad.dtype !== 'f32' || !sameShape(grad.shape, param.shape)) {
    throw new Error(`${op}: gradient ${grad.dtype}${shapeStr(grad.shape)} for parameter ${param}`);
  }
  for (const s of state) {
    if (s.dtype !== 'f32' || s.size !== param.size || s.offset !== 0 || !s.isContiguous()) {
      throw new Error(`${op}: state ${s} for parameter ${param} must be a contiguous f32 tensor of ${param.size} elements`);
    }
  }
  return grad.isContiguous() ? grad : launchCopy(grad);
}

export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (0 for parameters excluded from decay). */
  weightDecay: number;
  /** 1-based step count of this parameter, for the bias corrections. */
  step: number;
}

/**
 * One AdamW step in place (PyTorch's formulation): p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g;
 * v ← β2·v + (1−β2)·g²; p ← p − lr/(1−β1^t) · m / (√v / √(1−β2^t) + eps).
 */
export function launchAdamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, s: AdamWStep): void {
  const g = checkUpdate('adamw', param, grad, [m, v]);
  if (!(s.step >= 1 && Number.isInteger(s.step))) throw new Error(`adamw: step must be a positive integer, got ${s.step}`);
  const n = param.size;
  if (n > 0) {
    const width = vec4Width(n, param.offset, g.offset);
    const stepSize = s.lr / (1 - s.beta1 ** s.step);
    const bc2Sqrt = Math.sqrt(1 - s.beta2 ** s.step);
    const values = [n / width, param.offset / width, g.offset / width, 1 - s.lr * s.weightDecay, s.beta1, s.beta2, stepSize, bc2Sqrt, s.eps];
    param.device.dispatch(adamwSpec(width), [param.buffer, g.buffer, m.buffer, v.buffer], values, grid1d(n / width, WG));
  }
  if (g !== grad) g.dispose();
}

export interface SgdStep {
  lr: number;
  /** L2 penalty added to the gradient (PyTorch SGD's weight_decay; 0 for excluded parameters). */
  weightDecay: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  /** The first step copies the gradient into the momentum buffer instead of blending it in. */
  first: boolean;
}

/**
 * One SGD step in place (PyTorch's formulation): g ← g + wd·p; with momentum
 * b ← g on the first step, else μ·b + (1−dampening)·g, and g ← g + μ·b (nesterov) or b; p ← p − lr·g.
 * `buf` is null when momentum is 0.
 */
export function launchSgd(param: Tensor, grad: Tensor, buf: Tensor | null, s: SgdStep): void {
  const g = checkUpdate('sgd', param, grad, buf ? [buf] : []);
  if (s.momentum !== 0 && !buf) throw new Error(`sgd: momentum ${s.momentum} needs a momentum buffer for parameter ${param}`);
  const n = param.size;
  if (n > 0) {
    const width = vec4Width(n, param.offset, g.offset);
    const values = [n / width, param.offset / width, g.offset / width, s.lr, s.weightDecay, s.momentum, s.dampening, s.nesterov ? 1 : 0, s.first ? 1 : 0];
    const buffers = buf ? [param.buffer, g.buffer, buf.buffer] : [param.buffer, g.buffer];
    param.device.dispatch(sgdSpec(width, buf !== null), buffers, values, grid1d(n / width, WG));
  }
  if (g !== grad) g.dispose();
}

// ---- The same updates over an optimiser's arena (optim/arena.ts): one dispatch for every
// parameter. Each workgroup takes one work item (segment, first vec4, end vec4) and reads its
// parameter's step scalars from the segment table, so the arithmetic is the per-tensor kernels'.

const ARENA_STORAGE = (state: string[]): KernelSpec['storage'] => [
  { name: 'P', access: 'read_write', type: 'array<vec4<f32>>' },
  { name: 'G', access: 'read', type: 'array<vec4<f32>>' },
  ...state.map((name) => ({ name, access: 'read_write' as const, type: 'array<vec4<f32>>' })),
  { name: 'Seg', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'Work', access: 'read', type: 'array<vec4<u32>>' },
];

const ARENA_HEAD = `
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let item = wid.x + wid.y * nwg.x;
  if (item >= p.items) { return; }
  let range = Work[item];
  let i = range.y + lid.x;
  if (i >= range.z) { return; }
  let s = Seg[range.x];`;

/** AdamW over an arena; Seg[k] = (step size, √(1 − β2^t), 1 − lr·wd, 0) of parameter k. */
const ADAMW_ARENA: KernelSpec = {
  name: 'adamw_arena',
  storage: ARENA_STORAGE(['M', 'V']),
  params: [
    ['items', 'u32'],
    ['beta1', 'f32'],
    ['beta2', 'f32'],
    ['eps', 'f32'],
  ],
  workgroupSize: [WG],
  code: `${ARENA_HEAD}
  let g = G[i];
  let m = p.beta1 * M[i] + (1.0 - p.beta1) * g;
  let v = p.beta2 * V[i] + (1.0 - p.beta2) * g * g;
  M[i] = m;
  V[i] = v;
  let w = P[i] * s.z;
  P[i] = w - s.x * m / (sqrt(v) / s.y + p.eps);
}`,
};

/** SGD over an arena; Seg[k] = (lr, wd, first step ? 1 : 0, 0) of parameter k. */
function sgdArenaSpec(momentum: boolean): KernelSpec {
  return {
    name: 'sgd_arena',
    variant: momentum ? 'momentum' : '',
    storage: ARENA_STORAGE(momentum ? ['Buf'] : []),
    params: [
      ['items', 'u32'],
      ['momentum', 'f32'],
      ['dampening', 'f32'],
      ['nesterov', 'u32'],
    ],
    workgroupSize: [WG],
    code: `${ARENA_HEAD}
  let w = P[i];
  var g = G[i] + s.y * w;
${
  momentum
    ? `  var b = g;
  if (s.z == 0.0) { b = p.momentum * Buf[i] + (1.0 - p.dampening) * g; }
  Buf[i] = b;
  if (p.nesterov == 1u) { g = g + p.momentum * b; } else { g = b; }`
    : ''
}
  P[i] = w - s.x * g;
}`,
  };
}

/** The arena tensors of one update: values, gradients, state, and the work list and segment table. */
export interface ArenaUpdate {
  values: Tensor;
  grads: Tensor;
  state: Tensor[];
  /** (segment, first vec4, end vec4, 0) per work item. */
  work: Uint32Array;
  /** Four f32 per segment (parameter). */
  segments: Float32Array;
}

function dispatchArena(spec: KernelSpec, u: ArenaUpdate, params: number[]): void {
  const items = u.work.length / 4;
  if (items === 0) return;
  const dev = u.values.device;
  const seg = empty(dev, [u.segments.length], 'f32', 'arena_segments');
  const work = empty(dev, [u.work.length], 'u32', 'arena_work');
  dev.upload(seg.buffer, 0, u.segments);
  dev.upload(work.buffer, 0, u.work);
  dev.dispatch(spec, [u.values.buffer, u.grads.buffer, ...u.state.map((t) => t.buffer), seg.buffer, work.buffer], [items, ...params], grid1d(items, 1));
  seg.dispose();
  work.dispose();
}

/** launchAdamW for every parameter of an arena in one dispatch (segments: per parameter, see ADAMW_ARENA). */
export function launchAdamWArena(u: ArenaUpdate, s: { beta1: number; beta2: number; eps: number }): void {
  dispatchArena(ADAMW_ARENA, u, [s.beta1, s.beta2, s.eps]);
}

/** launchSgd for every parameter of an arena in one dispatch (segments: per parameter, see sgdArenaSpec). */
export function launchSgdArena(u: ArenaUpdate, s: { momentum: number; dampening: number; nesterov: boolean }): void {
  dispatchArena(sgdArenaSpec(u.state.length > 0), u, [s.momentum, s.dampening, s.nesterov ? 1 : 0]);
}

/** Partials[base + chunk] = Σ x² over one chunk of NORM_CHUNK units; one workgroup per chunk. */
function sumsqSpec(width: 1 | 4): KernelSpec {
  const t = floatType(width);
  return {
    name: 'sumsq_partial',
    variant: t,
    storage: [
      { name: 'X', access: 'read', type: `array<${t}>` },
      { name: 'Partials', access: 'read_write', type: 'array<f32>' },
    ],
    params: [
      ['n', 'u32'],
      ['off', 'u32'],
      ['chunks', 'u32'],
      ['base', 'u32'],
    ],
    workgroupSize: [WG],
    code: `
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let chunk = wid.x + wid.y * nwg.x;
  if (chunk >= p.chunks) { return; }
  let start = chunk * ${NORM_CHUNK}u;
  let end = min(start + ${NORM_CHUNK}u, p.n);
  var acc = 0.0;
  for (var i = start + lid.x; i < end; i += WG_X) {
    let x = X[p.off + i];
    acc += ${width === 4 ? 'dot(x, x)' : 'x * x'};
  }
  let total = wg_sum(acc, lid.x);
  if (lid.x == 0u) { Partials[p.base + chunk] = total; }
}`,
  };
}

/** Norm[0] = √(Σ Partials); one workgroup. */
const NORM_FINAL: KernelSpec = {
  name: 'norm_final',
  storage: [
    { name: 'Partials', access: 'read', type: 'array<f32>' },
    { name: 'Norm', access: 'read_write', type: 'array<f32>' },
  ],
  params: [['n', 'u32']],
  workgroupSize: [WG],
  code: `
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var acc = 0.0;
  for (var i = lid.x; i < p.n; i += WG_X) { acc += Partials[i]; }
  let total = wg_sum(acc, lid.x);
  if (lid.x == 0u) { Norm[0] = sqrt(total); }
}`,
};

/** x ← x · min(1, max_norm / (norm + 1e-6)), the factor taken from the GPU-side norm. */
function clipScaleSpec(width: 1 | 4): KernelSpec {
  const t = floatType(width);
  return {
    name: 'clip_scale',
    variant: t,
    storage: [
      { name: 'X', access: 'read_write', type: `array<${t}>` },
      { name: 'Norm', access: 'read', type: 'array<f32>' },
    ],
    params: [
      ['n', 'u32'],
      ['off', 'u32'],
      ['off_norm', 'u32'],
      ['max_norm', 'f32'],
    ],
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  X[p.off + i] *= min(1.0, p.max_norm / (Norm[p.off_norm] + 1e-6));
}`,
  };
}

/** √(Σ over tensors of Σ x²) as a scalar (shape []) tensor; no read-back. */
export function launchGlobalNorm(device: Tensor['device'], xs: readonly Tensor[]): Tensor {
  const parts = xs.map((x) => {
    if (x.dtype !== 'f32') throw new Error(`globalNorm: expected f32 tensors, got ${x}`);
    return x.isContiguous() ? x : launchCopy(x);
  });
  const widths = parts.map((x) => vec4Width(x.size, x.offset));
  const chunks = parts.map((x, k) => Math.ceil(x.size / widths[k]! / NORM_CHUNK));
  const total = chunks.reduce((a, b) => a + b, 0);
  const partials = empty(device, [Math.max(1, total)], 'f32', 'norm_partials');
  let base = 0;
  parts.forEach((x, k) => {
    const w = widths[k]!;
    if (chunks[k]! > 0) device.dispatch(sumsqSpec(w), [x.buffer, partials.buffer], [x.size / w, x.offset / w, chunks[k]!, base], grid1d(chunks[k]!, 1));
    base += chunks[k]!;
  });
  const norm = empty(device, [], 'f32', 'global_norm');
  device.dispatch(NORM_FINAL, [partials.buffer, norm.buffer], [total], [1, 1, 1]);
  partials.dispose();
  parts.forEach((x, k) => x !== xs[k] && x.dispose());
  return norm;
}

/** Scales each tensor in place by min(1, maxNorm / (norm + 1e-6)), `norm` a scalar tensor on the GPU. */
export function launchClipScale(xs: readonly Tensor[], norm: Tensor, maxNorm: number): void {
  if (norm.size !== 1 || norm.dtype !== 'f32') throw new Error(`clipScale: norm must be one f32 value, got ${norm}`);
  for (const x of xs) {
    if (x.dtype !== 'f32' || !x.isContiguous()) throw new Error(`clipScale: tensors scaled in place must be contiguous f32, got ${x}`);
    const w = vec4Width(x.size, x.offset);
    if (x.size > 0) x.device.dispatch(clipScaleSpec(w), [x.buffer, norm.buffer], [x.size / w, x.offset / w, norm.offset, maxNorm], grid1d(x.size / w, WG));
  }
}
