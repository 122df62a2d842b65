// The differentiable ops: each a forward launch and its backward rule, side by side. A rule reads
// what it needs from its closure, captured when the op ran (the tensors listed as saved are pinned
// until it has run), and gives a gradient to the inputs `needs` marks. Derived ops are
// compositions of these and need no rule of their own.
import { type BinaryOp, type UnaryOp, launchAssign, launchBinary, launchCopy, launchFill, launchUnary } from './ops/elementwise.js';
import { launchCast } from './ops/cast.js';
import { launchSum, normalizeAxes } from './ops/reduce.js';
import type { Device } from './runtime.js';
import { type BackwardRule, type DType, type Shape, type Tensor, contiguousStrides, empty, numel, record, shapeStr } from './tensor.js';

// ---- creation ----

export function zeros(device: Device, shape: Shape, dtype: DType = 'f32'): Tensor {
  const t = empty(device, shape, dtype, 'zeros');
  launchFill(t, 0);
  return t;
}

export function full(device: Device, shape: Shape, value: number): Tensor {
  const t = empty(device, shape, 'f32', 'full');
  launchFill(t, value);
  return t;
}

// ---- elementwise ----

function binary(op: BinaryOp, a: Tensor, b: Tensor, back: BackwardRule, saved: Tensor[] = []): Tensor {
  return record(op, launchBinary(op, a, b), [a, b], back, saved);
}

export function add(a: Tensor, b: Tensor): Tensor {
  return binary('add', a, b, (g) => [g, g]);
}

export function sub(a: Tensor, b: Tensor): Tensor {
  return binary('sub', a, b, (g) => [g, launchUnary('neg', g)]);
}

export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('mul', a, b, (g, { needs }) => [needs[0] ? launchBinary('mul', g, b) : null, needs[1] ? launchBinary('mul', g, a) : null], [a, b]);
}

export function div(a: Tensor, b: Tensor): Tensor {
  return binary(
    'div',
    a,
    b,
    (g, { needs }) => {
      const ga = launchBinary('div', g, b);
      if (!needs[1]) return [ga, null];
      // d(a/b)/db = -(a/b)/b = -ga·a/b
      const t = launchBinary('mul', ga, a);
      const t2 = launchBinary('div', t, b);
      t.dispose();
      const gb = launchUnary('neg', t2);
      t2.dispose();
      return [needs[0] ? ga : (ga.dispose(), null), gb];
    },
    [a, b],
  );
}

function unary(op: UnaryOp, x: Tensor, back: (g: Tensor) => Tensor, saved: Tensor[], alpha = 0): Tensor {
  return record(op, launchUnary(op, x, alpha), [x], (g) => [back(g)], saved);
}

export function neg(x: Tensor): Tensor {
  return unary('neg', x, (g) => launchUnary('neg', g), []);
}

export function scale(x: Tensor, s: number): Tensor {
  return unary('scale', x, (g) => launchUnary('scale', g, s), [], s);
}

export function addScalar(x: Tensor, s: number): Tensor {
  return unary('add_scalar', x, (g) => launchCopy(g), [], s);
}

export function exp(x: Tensor): Tensor {
  const y = launchUnary('exp', x);
  return record('exp', y, [x], (g) => [launchBinary('mul', g, y)], [y]);
}

export function log(x: Tensor): Tensor {
  return unary('log', x, (g) => launchBinary('div', g, x), [x]);
}

export function square(x: Tensor): Tensor {
  return unary(
    'square',
    x,
    (g) => {
      const t = launchBinary('mul', g, x);
      const r = launchUnary('scale', t, 2);
      t.dispose();
      return r;
    },
    [x],
  );
}

export function sqrt(x: Tensor): Tensor {
  const y = launchUnary('sqrt', x);
  return record(
    'sqrt',
    y,
    [x],
    (g) => {
      const t = launchBinary('div', g, y);
      const r = launchUnary('scale', t, 0.5);
      t.dispose();
      return [r];
    },
    [y],
  );
}

export function relu(x: Tensor): Tensor {
  return unary('relu', x, (g) => launchBinary('relu_grad', x, g), [x]);
}

/** GELU with the exact erf form, x·Φ(x) (ViT's). */
export function gelu(x: Tensor): Tensor {
  return unary('gelu', x, (g) => launchBinary('gelu_grad', x, g), [x]);
}

/** QuickGELU, x·σ(1.702x) (CLIP's). */
export function quickGelu(x: Tensor): Tensor {
  return unary('quick_gelu', x, (g) => launchBinary('quick_gelu_grad', x, g), [x]);
}

export function sigmoid(x: Tensor): Tensor {
  const y = launchUnary('sigmoid', x);
  return record(
    'sigmoid',
    y,
    [x],
    (g) => {
      // σ' = σ - σ²
      const sq = launchUnary('square', y);
      const d = launchBinary('sub', y, sq);
      sq.dispose();
      const r = launchBinary('mul', g, d);
      d.dispose();
      return [r];
    },
    [y],
  );
}

// ---- reductions ----

export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normalizeAxes('sum', x.rank, axes);
  const out = launchSum(x, ax, keepDims);
  // The gradient broadcasts back over the reduced axes.
  const kept = x.shape.map((d, i) => (ax.includes(i) ? 1 : d));
  return record('sum', out, [x], (g) => {
    const gk = g.view(kept, keepDims ? g.strides : insertUnitStrides(g.strides, ax, x.rank), g.offset);
    const gx = launchCopy(gk, x.shape);
    gk.dispose();
    return [gx];
  });
}

/** Strides of a reduced tensor with its dropped (size-1) axes put back. */
function insertUnitStrides(strides: readonly number[], axes: number[], rank: number): number[] {
  const out: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(axes.includes(i) ? 0 : strides[k++]!);
  return out;
}

export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normalizeAxes('mean', x.rank, axes);
  const n = ax.reduce((acc, a) => acc * x.shape[a]!, 1);
  const s = sum(x, ax, keepDims);
  const m = scale(s, 1 / Math.max(1, n));
  s.dispose();
  return m;
}

// ---- views: metadata only where possible ----

/** A tensor with the same data and a new shape (-1 infers one dim). Copies only if x is not contiguous. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const full = shape.map((d) => (d === -1 ? x.size / Math.max(1, known) : d));
  if (shape.filter((d) => d === -1).length > 1 || numel(full) !== x.size || !full.every(Number.isInteger)) {
    throw new Error(`reshape: cannot view ${shapeStr(x.shape)} (${x.size} elements) as ${shapeStr(shape)}`);
  }
  const src = x.isContiguous() ? x : launchCopy(x);
  const out = src.view(full, contiguousStrides(full), src.offset);
  if (src !== x) src.dispose();
  return record('reshape', out, [x], (g) => [reshape(g, x.shape)]);
}

/** Reorders dims: out.shape[i] = x.shape[dims[i]]. A view. */
export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((a) => (a < 0 ? a + x.rank : a));
  if (d.length !== x.rank || new Set(d).size !== x.rank || d.some((a) => a < 0 || a >= x.rank)) {
    throw new Error(`permute: dims [${dims.join(', ')}] do not permute a ${shapeStr(x.shape)} tensor`);
  }
  const out = x.view(
    d.map((a) => x.shape[a]!),
    d.map((a) => x.strides[a]!),
    x.offset,
  );
  const inverse = new Array<number>(d.length);
  d.forEach((a, i) => (inverse[a] = i));
  return record('permute', out, [x], (g) => [permute(g, inverse)]);
}

/** Swaps two dims (default: the last two). A view. */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const dims = [...Array(x.rank).keys()];
  const i = a < 0 ? a + x.rank : a;
  const j = b < 0 ? b + x.rank : b;
  [dims[i], dims[j]] = [dims[j]!, dims[i]!];
  return permute(x, dims);
}

/** Broadcasts size-1 dims (and new leading dims) to `shape` without copying (stride 0). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.rank;
  if (lead < 0) throw new Error(`expand: ${shapeStr(x.shape)} to lower rank ${shapeStr(shape)}`);
  const strides = shape.map((d, i) => {
    if (i < lead) return 0;
    const s = x.shape[i - lead]!;
    if (s === d) return x.strides[i - lead]!;
    if (s === 1) return 0;
    throw new Error(`expand: ${shapeStr(x.shape)} cannot expand to ${shapeStr(shape)}`);
  });
  // sumTo in backward() reduces the gradient back to x's shape.
  return record('expand', x.view([...shape], strides, x.offset), [x], (g) => [g]);
}

/** Elements [start, end) along `axis`. A view. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = axis < 0 ? axis + x.rank : axis;
  const n = x.shape[ax];
  if (n === undefined || start < 0 || end > n || start > end) {
    throw new Error(`slice: [${start}, ${end}) along axis ${axis} of ${shapeStr(x.shape)}`);
  }
  const shape = x.shape.map((d, i) => (i === ax ? end - start : d));
  const out = x.view(shape, x.strides, x.offset + start * x.strides[ax]!);
  return record('slice', out, [x], (g) => {
    const gx = zeros(x.device, x.shape);
    const region = gx.view(shape, gx.strides, start * gx.strides[ax]!);
    launchAssign(region, g);
    region.dispose();
    return [gx];
  });
}

/** Joins tensors along `axis` into a new contiguous tensor. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  const first = xs[0]!;
  const ax = axis < 0 ? axis + first.rank : axis;
  for (const t of xs) {
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== ax && d !== first.shape[i]) || t.dtype !== first.dtype) {
      throw new Error(`concat: ${xs.map((q) => `${q.dtype}${shapeStr(q.shape)}`).join(', ')} do not match outside axis ${axis}`);
    }
  }
  const total = xs.reduce((acc, t) => acc + t.shape[ax]!, 0);
  const shape = first.shape.map((d, i) => (i === ax ? total : d));
  const out = empty(first.device, shape, first.dtype, 'concat');
  const starts: number[] = [];
  let at = 0;
  for (const t of xs) {
    starts.push(at);
    const region = out.view(t.shape, out.strides, at * out.strides[ax]!);
    launchAssign(region, t);
    region.dispose();
    at += t.shape[ax]!;
  }
  return record('concat', out, [...xs], (g, { needs }) =>
    xs.map((t, k) => {
      if (!needs[k]) return null;
      const part = g.view(t.shape, g.strides, g.offset + starts[k]! * g.strides[ax]!);
      const gt = launchCopy(part);
      part.dispose();
      return gt;
    }),
  );
}

/** Materialises a view as a contiguous tensor (a new handle on the same data when it already is). */
export function contiguous(x: Tensor): Tensor {
  if (x.isContiguous()) return record('contiguous', x.view(x.shape, x.strides, x.offset), [x], (g) => [g]);
  return record('contiguous', launchCopy(x), [x], (g) => [g]);
}

/** `x` stored as `dtype` (f32 <-> f16); the gradient comes back in x's dtype. */
export function cast(x: Tensor, dtype: DType): Tensor {
  return record('cast', launchCast(x, dtype), [x], (g) => [launchCast(g, x.dtype)]);
}

/** The same data, cut from the tape. */
export function detach(x: Tensor): Tensor {
  return x.view(x.shape, x.strides, x.offset);
}

