// Elementwise kernels over strided, broadcast operands: binary ops, unary ops (activations and
// their derivatives among them), copy to contiguous, in-place accumulate and fill.
import { type KernelSpec, LINEAR_INDEX, grid1d, memoSpecs, vec4Width } from '../kernel.js';
import { type Shape, type Tensor, empty, sameShape, shapeStr } from '../tensor.js';
import { broadcastShapes, broadcastStrides, coalesce, layoutParams, layoutValues, layoutWgsl } from './layout.js';

const WG = 256;

/** erf with |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26); WGSL has no erf. */
export const ERF_WGSL = `
fn erf_approx(x: f32) -> f32 {
  let s = sign(x);
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return s * y;
}
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }`;

/** Binary ops as WGSL expressions of `a` and `b`. */
export const BINARY = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  maximum: 'max(a, b)',
  minimum: 'min(a, b)',
  /** b · GELU'(a), GELU(x) = x·Φ(x). */
  gelu_grad: 'b * (0.5 * (1.0 + erf_approx(a * 0.70710678118654752)) + a * 0.39894228040143268 * exp(-0.5 * a * a))',
  /** b · d/da [a·σ(1.702a)]. */
  quick_gelu_grad: 'b * (sigmoid(1.702 * a) + 1.702 * a * sigmoid(1.702 * a) * (1.0 - sigmoid(1.702 * a)))',
  relu_grad: 'select(0.0, b, a > 0.0)',
} as const;
export type BinaryOp = keyof typeof BINARY;

/** Unary ops as WGSL expressions of `x` and the scalar `p.alpha`. */
export const UNARY = {
  neg: '-x',
  scale: 'x * p.alpha',
  add_scalar: 'x + p.alpha',
  exp: 'exp(x)',
  log: 'log(x)',
  sqrt: 'sqrt(x)',
  rsqrt: 'inverseSqrt(x)',
  square: 'x * x',
  reciprocal: '1.0 / x',
  relu: 'max(x, 0.0)',
  gelu: '0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752))',
  quick_gelu: 'x * sigmoid(1.702 * x)',
  sigmoid: 'sigmoid(x)',
  tanh: 'tanh(x)',
  pow_scalar: 'pow(x, p.alpha)',
} as const;
export type UnaryOp = keyof typeof UNARY;

/**
 * WGSL that sets `Out[i]` from the scalar expression `expr` of the operands `names`, read at
 * `at(name)`: with vec4 storage, `i` indexes vec4s and the expression runs once per component
 * (the same scalar arithmetic: a CPU adapter loads a vec4 per lane for about the price of a scalar).
 */
function elementwiseBody(names: string[], at: (name: string) => string, expr: string, vec4: boolean): string {
  const load = (n: string) => `${n}[${at(n)}]`;
  if (!vec4) return `${names.map((n) => `let ${n.toLowerCase()} = ${load(n)};`).join(' ')}\n  Out[i] = ${expr};`;
  const L = [`${names.map((n) => `let ${n.toLowerCase()}4 = ${load(n)};`).join(' ')}`, 'var o: vec4<f32>;'];
  for (const c of ['x', 'y', 'z', 'w']) L.push(`{ ${names.map((n) => `let ${n.toLowerCase()} = ${n.toLowerCase()}4.${c};`).join(' ')} o.${c} = ${expr}; }`);
  L.push('Out[i] = o;');
  return L.join('\n  ');
}

/** Storage layout of an elementwise kernel: scalar, or vec4 (contiguous operands, n and offsets multiples of 4). */
type Form = 'strided' | 'contiguous' | 'contiguous-vec4';

function elementType(form: Form): string {
  return form === 'contiguous-vec4' ? 'array<vec4<f32>>' : 'array<f32>';
}

const binarySpec = memoSpecs((op: BinaryOp, form: Form): KernelSpec => {
  const contiguous = form !== 'strided';
  return {
    name: `binary_${op}`,
    variant: form,
    storage: [
      { name: 'A', access: 'read', type: elementType(form) },
      { name: 'B', access: 'read', type: elementType(form) },
      { name: 'Out', access: 'read_write', type: elementType(form) },
    ],
    params: [['n', 'u32'], ...(contiguous ? [['off_a', 'u32'] as ['off_a', 'u32'], ['off_b', 'u32'] as ['off_b', 'u32']] : layoutParams(['a', 'b']))],
    workgroupSize: [WG],
    code: `${ERF_WGSL}
${contiguous ? '' : layoutWgsl(['a', 'b'])}
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  ${elementwiseBody(['A', 'B'], (n) => (contiguous ? `p.off_${n.toLowerCase()} + i` : `at_${n.toLowerCase()}(i)`), BINARY[op], form === 'contiguous-vec4')}
}`,
  };
});

const unarySpec = memoSpecs((op: UnaryOp, form: Form): KernelSpec => {
  const contiguous = form !== 'strided';
  return {
    name: `unary_${op}`,
    variant: form,
    storage: [
      { name: 'X', access: 'read', type: elementType(form) },
      { name: 'Out', access: 'read_write', type: elementType(form) },
    ],
    params: [['n', 'u32'], ['alpha', 'f32'], ...(contiguous ? [['off_x', 'u32'] as ['off_x', 'u32']] : layoutParams(['x']))],
    workgroupSize: [WG],
    code: `${ERF_WGSL}
${contiguous ? '' : layoutWgsl(['x'])}
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  ${elementwiseBody(['X'], () => (contiguous ? 'p.off_x + i' : 'at_x(i)'), UNARY[op], form === 'contiguous-vec4')}
}`,
  };
});

function formOf(contiguous: boolean, width: number): Form {
  return !contiguous ? 'strided' : width === 4 ? 'contiguous-vec4' : 'contiguous';
}

function checkFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.dtype !== 'f32') throw new Error(`${op}: expected f32 operands, got ${t.dtype} ${shapeStr(t.shape)}`);
}

function checkDevice(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.device !== ts[0]!.device) throw new Error(`${op}: operands live on different devices`);
}

/** out = a ∘ b with broadcasting; out is a new contiguous f32 tensor of the broadcast shape. */
export function launchBinary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  checkFloat(op, a, b);
  checkDevice(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = empty(a.device, shape, 'f32', op);
  const n = out.size;
  if (n === 0) return out;
  const contiguous = a.isContiguous() && b.isContiguous() && sameShape(a.shape, shape) && sameShape(b.shape, shape);
  const w = contiguous ? vec4Width(n, a.offset, b.offset) : 1;
  let params: number[];
  if (contiguous) params = [n / w, a.offset / w, b.offset / w];
  else {
    const l = coalesce(op, shape, [broadcastStrides(op, a, shape), broadcastStrides(op, b, shape)]);
    params = [n, ...layoutValues(l.dims, [a.offset, b.offset], l.strides)];
  }
  a.device.dispatch(binarySpec(op, formOf(contiguous, w)), [a.buffer, b.buffer, out.buffer], params, grid1d(n / w, WG));
  return out;
}

/** out = f(x) elementwise; a new contiguous f32 tensor. */
export function launchUnary(op: UnaryOp, x: Tensor, alpha = 0): Tensor {
  checkFloat(op, x);
  const out = empty(x.device, x.shape, 'f32', op);
  const n = out.size;
  if (n === 0) return out;
  const contiguous = x.isContiguous();
  const w = contiguous ? vec4Width(n, x.offset) : 1;
  let params: number[];
  if (contiguous) params = [n / w, alpha, x.offset / w];
  else {
    const l = coalesce(op, x.shape, [[...x.strides]]);
    params = [n, alpha, ...layoutValues(l.dims, [x.offset], l.strides)];
  }
  x.device.dispatch(unarySpec(op, formOf(contiguous, w)), [x.buffer, out.buffer], params, grid1d(n / w, WG));
  return out;
}

function assignSpec(dtype: string): KernelSpec {
  const t = dtype === 'f16' ? 'u32' : dtype;
  return {
    name: 'assign_strided',
    variant: t,
    storage: [
      { name: 'X', access: 'read', type: `array<${t}>` },
      { name: 'Out', access: 'read_write', type: `array<${t}>` },
    ],
    params: [['n', 'u32'], ...layoutParams(['x', 'o'])],
    workgroupSize: [WG],
    code: `${layoutWgsl(['x', 'o'])}
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  Out[at_o(i)] = X[at_x(i)];
}`,
  };
}

/**
 * dst[...] = src broadcast to dst's shape, where dst may be any non-overlapping view (a slice of
 * a larger tensor, a transposed view). Any 4-byte dtype.
 */
export function launchAssign(dst: Tensor, src: Tensor): void {
  if (src.dtype !== dst.dtype || src.dtype === 'f16') {
    throw new Error(`assign: dtypes ${src.dtype} into ${dst.dtype} (4-byte dtypes, equal) ${shapeStr(src.shape)} -> ${shapeStr(dst.shape)}`);
  }
  if (src.storage === dst.storage) throw new Error(`assign: source ${shapeStr(src.shape)} and destination share storage`);
  const n = dst.size;
  if (n === 0) return;
  if (src.isContiguous() && dst.isContiguous() && sameShape(src.shape, dst.shape)) {
    dst.device.copy(src.buffer, src.offset * 4, dst.buffer, dst.offset * 4, n * 4);
    return;
  }
  const l = coalesce('assign', dst.shape, [broadcastStrides('assign', src, dst.shape), [...dst.strides]]);
  dst.device.dispatch(assignSpec(dst.dtype), [src.buffer, dst.buffer], [n, ...layoutValues(l.dims, [src.offset, dst.offset], l.strides)], grid1d(n, WG));
}

/** A contiguous copy of `x` broadcast to `shape`, any 4-byte dtype. */
export function launchCopy(x: Tensor, shape: Shape = x.shape): Tensor {
  const out = empty(x.device, shape, x.dtype, 'contiguous');
  launchAssign(out, x);
  return out;
}

const ACCUMULATE: KernelSpec = {
  name: 'accumulate',
  storage: [
    { name: 'Dst', access: 'read_write', type: 'array<f32>' },
    { name: 'Src', access: 'read', type: 'array<f32>' },
  ],
  params: [['n', 'u32'], ['off_dst', 'u32'], ['off_src', 'u32'], ['alpha', 'f32']],
  workgroupSize: [WG],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  Dst[p.off_dst + i] += p.alpha * Src[p.off_src + i];
}`,
};

/** dst += alpha · src, in place; both contiguous, same shape, different storage. */
export function launchAccumulate(dst: Tensor, src: Tensor, alpha = 1): void {
  checkFloat('accumulate', dst, src);
  if (!sameShape(dst.shape, src.shape)) throw new Error(`accumulate: ${shapeStr(src.shape)} into ${shapeStr(dst.shape)}`);
  if (!dst.isContiguous() || !src.isContiguous()) throw new Error('accumulate: operands must be contiguous');
  if (dst.storage === src.storage) throw new Error('accumulate: source and destination share storage');
  const n = dst.size;
  if (n === 0) return;
  dst.device.dispatch(ACCUMULATE, [dst.buffer, src.buffer], [n, dst.offset, src.offset, alpha], grid1d(n, WG));
}

const FILL: KernelSpec = {
  name: 'fill',
  storage: [{ name: 'Out', access: 'read_write', type: 'array<u32>' }],
  params: [['n', 'u32'], ['off', 'u32'], ['bits', 'u32']],
  workgroupSize: [WG],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  Out[p.off + i] = p.bits;
}`,
};

/** Sets every element of a contiguous 4-byte tensor to `value`, in place. */
export function launchFill(t: Tensor, value: number): void {
  if (!t.isContiguous() || t.dtype === 'f16') throw new Error(`fill: needs a contiguous 4-byte tensor, got ${t}`);
  const bits = new DataView(new ArrayBuffer(4));
  if (t.dtype === 'f32') bits.setFloat32(0, value, true);
  else if (t.dtype === 'i32') bits.setInt32(0, value, true);
  else bits.setUint32(0, value, true);
  if (t.size === 0) return;
  t.device.dispatch(FILL, [t.buffer], [t.size, t.offset, bits.getUint32(0, true)], grid1d(t.size, WG));
}
