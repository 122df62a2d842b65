// Cross-entropy with integer labels and optional label smoothing, fused with its log-softmax:
// one workgroup per row computes the row's log-sum-exp and its loss, and keeps what backward needs
// (the row max and log-sum); a one-workgroup pass then takes the mean over the batch in a fixed
// order, so the loss is deterministic.
//
// Out-of-range labels: a label outside [0, C) is never used as an index. Its row's loss is NaN, so
// the mean loss is NaN, and its row of the gradient is NaN; the run cannot silently train on it.
// The NaN comes in as a parameter (p.nan) because a WGSL constant expression may not be NaN.
// Hosts that hold the labels check them before upload (see nn/loss.ts).
import { type KernelSpec, LINEAR_INDEX, WORKGROUP_REDUCE_WGSL, grid1d } from '../kernel.js';
import { type Tensor, empty, sameShape, shapeStr } from '../tensor.js';
import { ROW_ARGS, ROW_INDEX, dense, release, rowWorkgroup, rowsOf } from './row.js';

const f32 = (name: string, access: 'read' | 'read_write' = 'read') => ({ name, access, type: 'array<f32>' });

function crossEntropyRowsSpec(wg: number): KernelSpec {
  return {
    name: 'cross_entropy_rows',
    storage: [f32('X'), { name: 'Labels', access: 'read', type: 'array<i32>' }, f32('Loss', 'read_write'), f32('Stats', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['smoothing', 'f32'], ['nan', 'f32'], ['off_x', 'u32'], ['off_l', 'u32']],
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
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < p.n; i += WG_X) {
    let x = X[bx + i];
    acc += vec2<f32>(exp(x - m), x - m);
  }
  let s = wg_sum2(acc, lid);
  if (lid != 0u) { return; }
  // log p_c = (x_c - m) - log Σ exp(x - m): never m + log(...) first, which rounds at the scale of m.
  let ls = log(s.x);
  let label = Labels[p.off_l + row];
  let valid = label >= 0 && u32(label) < p.n;
  let xl = X[bx + select(0u, u32(label), valid)];
  // -log p_label, and the mean over classes of -log p_c, the smoothing term.
  let nll = ls - (xl - m);
  let spread = ls - s.y / f32(p.n);
  Loss[row] = select(p.nan, (1.0 - p.smoothing) * nll + p.smoothing * spread, valid);
  Stats[2u * row] = m;
  Stats[2u * row + 1u] = ls;
}`,
  };
}

const MEAN_WG = 256;

const MEAN_SPEC: KernelSpec = {
  name: 'cross_entropy_mean',
  storage: [f32('Loss'), f32('Out', 'read_write')],
  params: [['rows', 'u32']],
  workgroupSize: [MEAN_WG],
  code: `${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let lid = lid3.x;
  var s = 0.0;
  for (var i = lid; i < p.rows; i += WG_X) { s += Loss[i]; }
  s = wg_sum(s, lid);
  if (lid == 0u) { Out[0] = s / f32(p.rows); }
}`,
};

const BACKWARD_WG = 256;

const CROSS_ENTROPY_BACKWARD: KernelSpec = {
  name: 'cross_entropy_backward',
  storage: [f32('G'), f32('X'), { name: 'Labels', access: 'read', type: 'array<i32>' }, f32('Stats'), f32('DX', 'read_write')],
  params: [['rows', 'u32'], ['n', 'u32'], ['smoothing', 'f32'], ['nan', 'f32'], ['off_g', 'u32'], ['off_x', 'u32'], ['off_l', 'u32'], ['off_s', 'u32']],
  workgroupSize: [BACKWARD_WG],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.rows * p.n) { return; }
  let row = i / p.n;
  let c = i % p.n;
  let label = Labels[p.off_l + row];
  let valid = label >= 0 && u32(label) < p.n;
  let tgt = p.smoothing / f32(p.n) + select(0.0, 1.0 - p.smoothing, valid && u32(label) == c);
  let prob = exp((X[p.off_x + i] - Stats[p.off_s + 2u * row]) - Stats[p.off_s + 2u * row + 1u]);
  DX[i] = select(p.nan, G[p.off_g] / f32(p.rows) * (prob - tgt), valid);
}`,
};

export interface CrossEntropyOut {
  /** The mean loss over the batch, shape []. */
  loss: Tensor;
  /**
   * Per row (max, log Σ exp(x - max)), shape [B, 2]: with the logits it gives the softmax in
   * backward. Kept apart rather than summed into the log-sum-exp, so that x - max stays exact.
   */
  stats: Tensor;
}

function checkLabels(op: string, logits: Tensor, labels: Tensor): { rows: number; n: number } {
  if (logits.rank !== 2) throw new Error(`${op}: logits must be [B, C], got ${shapeStr(logits.shape)}`);
  const { rows, n } = rowsOf(op, logits);
  if (labels.dtype !== 'i32' || !sameShape(labels.shape, [rows])) {
    throw new Error(`${op}: labels must be i32 [${rows}] for logits ${shapeStr(logits.shape)}, got ${labels.dtype} ${shapeStr(labels.shape)}`);
  }
  return { rows, n };
}

function checkSmoothing(op: string, smoothing: number): void {
  if (!(smoothing >= 0 && smoothing <= 1)) throw new Error(`${op}: label smoothing must be in [0, 1], got ${smoothing}`);
}

/** Mean over the batch of (1-ε)·(-log p_label) + ε·mean_c(-log p_c), p = softmax of the logits' rows. */
export function launchCrossEntropy(logits: Tensor, labels: Tensor, smoothing = 0): CrossEntropyOut {
  const { rows, n } = checkLabels('crossEntropy', logits, labels);
  checkSmoothing('crossEntropy', smoothing);
  if (rows === 0) throw new Error(`crossEntropy: the mean over an empty batch ${shapeStr(logits.shape)} is undefined`);
  const dev = logits.device;
  const x = dense(logits);
  const l = dense(labels);
  const rowLoss = empty(dev, [rows], 'f32', 'cross_entropy_rows');
  const stats = empty(dev, [rows, 2], 'f32', 'cross_entropy_stats');
  dev.dispatch(crossEntropyRowsSpec(rowWorkgroup(n)), [x.buffer, l.buffer, rowLoss.buffer, stats.buffer], [rows, n, smoothing, NaN, x.offset, l.offset], grid1d(rows, 1));
  const loss = empty(dev, [], 'f32', 'cross_entropy');
  dev.dispatch(MEAN_SPEC, [rowLoss.buffer, loss.buffer], [rows], [1, 1, 1]);
  rowLoss.dispose();
  release(logits, x);
  release(labels, l);
  return { loss, stats };
}

/** d loss / d logits = g·(softmax(logits) - target)/B, target = (1-ε)·onehot(label) + ε/C; `g` is the loss's gradient, shape []. */
export function launchCrossEntropyBackward(g: Tensor, logits: Tensor, labels: Tensor, stats: Tensor, smoothing = 0): Tensor {
  const { rows, n } = checkLabels('crossEntropyBackward', logits, labels);
  checkSmoothing('crossEntropyBackward', smoothing);
  if (g.size !== 1 || g.dtype !== 'f32') throw new Error(`crossEntropyBackward: gradient must be one f32, got ${g.dtype} ${shapeStr(g.shape)}`);
  if (stats.size !== 2 * rows || !stats.isContiguous()) throw new Error(`crossEntropyBackward: stats ${shapeStr(stats.shape)} for logits ${shapeStr(logits.shape)}`);
  const dev = logits.device;
  const x = dense(logits);
  const l = dense(labels);
  const dx = empty(dev, logits.shape, 'f32', 'cross_entropy_dlogits');
  dev.dispatch(
    CROSS_ENTROPY_BACKWARD,
    [g.buffer, x.buffer, l.buffer, stats.buffer, dx.buffer],
    [rows, n, smoothing, NaN, g.offset, x.offset, l.offset, stats.offset],
    grid1d(rows * n, BACKWARD_WG),
  );
  release(logits, x);
  release(labels, l);
  return dx;
}
