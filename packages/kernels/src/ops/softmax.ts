// Softmax and log-softmax over the last axis, forward and backward; one workgroup per row. Both
// shift by the row maximum first, so large logits neither overflow nor lose the small ones.
import { type KernelSpec, WORKGROUP_REDUCE_WGSL, grid1d } from '../kernel.js';
import { type Tensor, empty, sameShape, shapeStr } from '../tensor.js';
import { ROW_ARGS, ROW_INDEX, dense, release, rowWorkgroup, rowsOf } from './row.js';

export type SoftmaxKind = 'softmax' | 'log_softmax';

const f32 = (name: string, access: 'read' | 'read_write' = 'read') => ({ name, access, type: 'array<f32>' });

function forwardSpec(kind: SoftmaxKind, wg: number): KernelSpec {
  // x - m is exact for x near m; subtracting log(s) after it keeps log-softmax accurate for large logits.
  const out = kind === 'softmax' ? 'exp(X[bx + i] - m) / s' : '(X[bx + i] - m) - ls';
  return {
    name: kind,
    storage: [f32('X'), f32('Y', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['off_x', 'u32']],
    workgroupSize: [wg],
    code: `${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let row = ${ROW_INDEX};
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let bx = p.off_x + row * p.n;
  var m = -3.4028234e38;
  for (var i = lid; i < p.n; i += WG_X) { m = max(m, X[bx + i]); }
  m = wg_max(m, lid);
  var e = 0.0;
  for (var i = lid; i < p.n; i += WG_X) { e += exp(X[bx + i] - m); }
  let s = wg_sum(e, lid);
  let ls = log(s);
  let by = row * p.n;
  for (var i = lid; i < p.n; i += WG_X) { Y[by + i] = ${out}; }
}`,
  };
}

// softmax: dx = y·(g - Σ g·y); log-softmax: dx = g - exp(y)·Σ g.
function backwardSpec(kind: SoftmaxKind, wg: number): KernelSpec {
  const soft = kind === 'softmax';
  return {
    name: `${kind}_backward`,
    storage: [f32('G'), f32('Y'), f32('DX', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['off_g', 'u32'], ['off_y', 'u32']],
    workgroupSize: [wg],
    code: `${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let row = ${ROW_INDEX};
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let bg = p.off_g + row * p.n;
  let by = p.off_y + row * p.n;
  var a = 0.0;
  for (var i = lid; i < p.n; i += WG_X) { a += ${soft ? 'G[bg + i] * Y[by + i]' : 'G[bg + i]'}; }
  let s = wg_sum(a, lid);
  let bd = row * p.n;
  for (var i = lid; i < p.n; i += WG_X) {
    DX[bd + i] = ${soft ? 'Y[by + i] * (G[bg + i] - s)' : 'G[bg + i] - exp(Y[by + i]) * s'};
  }
}`,
  };
}

/** softmax or log-softmax of `x` over its last axis; a new contiguous tensor. */
export function launchSoftmax(kind: SoftmaxKind, x: Tensor): Tensor {
  const { rows, n } = rowsOf(kind, x);
  const xc = dense(x);
  const y = empty(x.device, x.shape, 'f32', kind);
  x.device.dispatch(forwardSpec(kind, rowWorkgroup(n)), [xc.buffer, y.buffer], [rows, n, xc.offset], grid1d(rows, 1));
  release(x, xc);
  return y;
}

/** The input gradient of softmax or log-softmax from its output `y` and output gradient `g`. */
export function launchSoftmaxBackward(kind: SoftmaxKind, g: Tensor, y: Tensor): Tensor {
  const { rows, n } = rowsOf(`${kind}Backward`, y);
  if (g.dtype !== 'f32' || !sameShape(g.shape, y.shape)) {
    throw new Error(`${kind}Backward: gradient ${g.dtype} ${shapeStr(g.shape)} for output ${shapeStr(y.shape)}`);
  }
  const gc = dense(g);
  const yc = dense(y);
  const dx = empty(y.device, y.shape, 'f32', `${kind}_dx`);
  y.device.dispatch(backwardSpec(kind, rowWorkgroup(n)), [gc.buffer, yc.buffer, dx.buffer], [rows, n, gc.offset, yc.offset], grid1d(rows, 1));
  release(g, gc);
  release(y, yc);
  return dx;
}
