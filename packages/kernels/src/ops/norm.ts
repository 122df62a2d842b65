// Normalisation over the last axis: LayerNorm (affine) and L2 normalisation, forward and backward.
// One workgroup per row; LayerNorm's weight and bias gradients are reduced over rows in two passes
// (per-chunk partial sums with one invocation per column, then a sum over chunks) so that many
// rows spread over many workgroups.
import { type KernelSpec, WORKGROUP_REDUCE_WGSL, grid1d, memoSpecs } from '../kernel.js';
import { type Tensor, empty, sameShape, shapeStr } from '../tensor.js';
import { columnWorkgroup, fixedSubgroupSize, isCpuAdapter } from './adapter.js';
import { ROW_ARGS, ROW_INDEX, dense, release, rowWorkgroup, rowsOf } from './row.js';

const f32 = (name: string, access: 'read' | 'read_write' = 'read') => ({ name, access, type: 'array<f32>' });

function layerNormSpec(wg: number): KernelSpec {
  return {
    name: 'layer_norm',
    storage: [f32('X'), f32('W'), f32('B'), f32('Y', 'read_write'), f32('Mean', 'read_write'), f32('Rstd', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['eps', 'f32'], ['off_x', 'u32'], ['off_w', 'u32'], ['off_b', 'u32']],
    workgroupSize: [wg],
    code: `${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let row = ${ROW_INDEX};
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let bx = p.off_x + row * p.n;
  // One pass over data shifted by the row's first element: var = E[(x-k)²] - E[x-k]² cancels only
  // when k lies many standard deviations from the mean, not for a large mean as plain E[x²] would.
  let k = X[bx];
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < p.n; i += WG_X) { let d = X[bx + i] - k; acc += vec2<f32>(d, d * d); }
  let m = wg_sum2(acc, lid) / f32(p.n);
  let mean = k + m.x;
  let rstd = 1.0 / sqrt(max(m.y - m.x * m.x, 0.0) + p.eps);
  let by = row * p.n;
  for (var i = lid; i < p.n; i += WG_X) {
    Y[by + i] = (X[bx + i] - mean) * rstd * W[p.off_w + i] + B[p.off_b + i];
  }
  if (lid == 0u) {
    Mean[row] = mean;
    Rstd[row] = rstd;
  }
}`,
  };
}

function layerNormDxSpec(wg: number): KernelSpec {
  return {
    name: 'layer_norm_dx',
    storage: [f32('G'), f32('X'), f32('W'), f32('Mean'), f32('Rstd'), f32('DX', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['off_g', 'u32'], ['off_x', 'u32'], ['off_w', 'u32'], ['off_m', 'u32'], ['off_r', 'u32'], ['accumulate', 'u32']],
    workgroupSize: [wg],
    code: `${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let row = ${ROW_INDEX};
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let mean = Mean[p.off_m + row];
  let rstd = Rstd[p.off_r + row];
  let bx = p.off_x + row * p.n;
  let bg = p.off_g + row * p.n;
  var acc = vec2<f32>(0.0);
  for (var i = lid; i < p.n; i += WG_X) {
    let xhat = (X[bx + i] - mean) * rstd;
    let dxhat = G[bg + i] * W[p.off_w + i];
    acc += vec2<f32>(dxhat, dxhat * xhat);
  }
  let m = wg_sum2(acc, lid) / f32(p.n);
  let bd = row * p.n;
  for (var i = lid; i < p.n; i += WG_X) {
    let xhat = (X[bx + i] - mean) * rstd;
    let dxhat = G[bg + i] * W[p.off_w + i];
    let d = rstd * (dxhat - m.x - xhat * m.y);
    if (p.accumulate != 0u) { DX[bd + i] += d; } else { DX[bd + i] = d; }
  }
}`,
  };
}

// ---- Rows by one subgroup (CPU adapters with a fixed subgroup size, rows a multiple of 4 wide):
// the workgroup is one subgroup that takes SG_ROWS rows in turn, its lanes stride each row by
// vec4s and reduce with subgroupAdd: no barriers and no workgroup memory, where the tree kernels
// above cost lavapipe a switch between every 8 invocations at each barrier. On lavapipe at the
// demo's [2080, 64]: 2.5 ms per LayerNorm.
const SG_ROWS = 4;

const vec4s = (name: string, access: 'read' | 'read_write' = 'read') => ({ name, access, type: 'array<vec4<f32>>' });

function layerNormSubgroupSpec(sg: number): KernelSpec {
  return {
    name: 'layer_norm_sg',
    storage: [vec4s('X'), vec4s('W'), vec4s('B'), vec4s('Y', 'read_write'), f32('Mean', 'read_write'), f32('Rstd', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['eps', 'f32'], ['off_x', 'u32'], ['off_w', 'u32'], ['off_b', 'u32']],
    workgroupSize: [sg],
    enable: ['subgroups'],
    code: `
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let lane = lid3.x;
  let n4 = p.n / 4u;
  let w0 = p.off_w / 4u;
  let b0 = p.off_b / 4u;
  for (var rr = 0u; rr < ${SG_ROWS}u; rr++) {
    let row = (${ROW_INDEX}) * ${SG_ROWS}u + rr;
    if (row >= p.rows) { break; }
    let bx = p.off_x / 4u + row * n4;
    // Shifted by the row's first element, as the tree kernel (see layerNormSpec).
    let k = vec4<f32>(X[bx].x);
    var acc = vec2<f32>(0.0);
    for (var i = lane; i < n4; i += WG_X) { let d = X[bx + i] - k; acc += vec2<f32>(d.x + d.y + d.z + d.w, dot(d, d)); }
    let m = subgroupAdd(acc) / f32(p.n);
    let mean = k.x + m.x;
    let rstd = 1.0 / sqrt(max(m.y - m.x * m.x, 0.0) + p.eps);
    let by = row * n4;
    for (var i = lane; i < n4; i += WG_X) { Y[by + i] = (X[bx + i] - vec4<f32>(mean)) * rstd * W[w0 + i] + B[b0 + i]; }
    if (lane == 0u) {
      Mean[row] = mean;
      Rstd[row] = rstd;
    }
  }
}`,
  };
}

function layerNormDxSubgroupSpec(sg: number): KernelSpec {
  return {
    name: 'layer_norm_dx_sg',
    storage: [vec4s('G'), vec4s('X'), vec4s('W'), f32('Mean'), f32('Rstd'), vec4s('DX', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['off_g', 'u32'], ['off_x', 'u32'], ['off_w', 'u32'], ['off_m', 'u32'], ['off_r', 'u32'], ['accumulate', 'u32']],
    workgroupSize: [sg],
    enable: ['subgroups'],
    code: `
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let lane = lid3.x;
  let n4 = p.n / 4u;
  let w0 = p.off_w / 4u;
  for (var rr = 0u; rr < ${SG_ROWS}u; rr++) {
    let row = (${ROW_INDEX}) * ${SG_ROWS}u + rr;
    if (row >= p.rows) { break; }
    let mean = vec4<f32>(Mean[p.off_m + row]);
    let rstd = Rstd[p.off_r + row];
    let bx = p.off_x / 4u + row * n4;
    let bg = p.off_g / 4u + row * n4;
    var acc = vec2<f32>(0.0);
    for (var i = lane; i < n4; i += WG_X) {
      let xhat = (X[bx + i] - mean) * rstd;
      let dxhat = G[bg + i] * W[w0 + i];
      acc += vec2<f32>(dxhat.x + dxhat.y + dxhat.z + dxhat.w, dot(dxhat, xhat));
    }
    let m = subgroupAdd(acc) / f32(p.n);
    let bd = row * n4;
    for (var i = lane; i < n4; i += WG_X) {
      let xhat = (X[bx + i] - mean) * rstd;
      let dxhat = G[bg + i] * W[w0 + i];
      let d = rstd * (dxhat - vec4<f32>(m.x) - xhat * m.y);
      if (p.accumulate != 0u) { DX[bd + i] += d; } else { DX[bd + i] = d; }
    }
  }
}`,
  };
}

/** The subgroup size the row-by-subgroup kernels run with here, or 0 where they cannot (see above). */
function rowSubgroup(dev: Tensor['device'], n: number, offsets: number[]): number {
  const sg = fixedSubgroupSize(dev);
  return sg && isCpuAdapter(dev) && n % 4 === 0 && offsets.every((o) => o % 4 === 0) ? sg : 0;
}

const PARAM_WG = 256;

/**
 * Rows per partial-sum chunk of the weight/bias gradients; the chunk count must fit one grid dim.
 * On a CPU adapter one chunk up to 16384 rows, and then the partial sums are the gradients (no
 * second pass): an invocation per column summing a few thousand rows takes microseconds.
 */
function chunkRows(dev: Tensor['device'], rows: number): number {
  if (isCpuAdapter(dev) && rows <= 16384) return Math.max(1, rows);
  return Math.max(64, Math.ceil(rows / 65535));
}

// Partial[(2·chunk + 0)·n + col] = Σ g·x̂ and Partial[(2·chunk + 1)·n + col] = Σ g over the chunk's rows.
const layerNormDparamPartialSpec = memoSpecs((wg: number): KernelSpec => ({
  name: 'layer_norm_dparam_partial',
  storage: [f32('G'), f32('X'), f32('Mean'), f32('Rstd'), f32('Partial', 'read_write')],
  params: [['rows', 'u32'], ['n', 'u32'], ['chunk_rows', 'u32'], ['off_g', 'u32'], ['off_x', 'u32'], ['off_m', 'u32'], ['off_r', 'u32']],
  workgroupSize: [wg],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let col = gid.x;
  if (col >= p.n) { return; }
  let chunk = wid.y;
  let r0 = chunk * p.chunk_rows;
  let r1 = min(r0 + p.chunk_rows, p.rows);
  var dw = 0.0;
  var db = 0.0;
  for (var r = r0; r < r1; r++) {
    let g = G[p.off_g + r * p.n + col];
    dw += g * (X[p.off_x + r * p.n + col] - Mean[p.off_m + r]) * Rstd[p.off_r + r];
    db += g;
  }
  Partial[2u * chunk * p.n + col] = dw;
  Partial[(2u * chunk + 1u) * p.n + col] = db;
}`,
}));

const LAYER_NORM_DPARAM_FINAL: KernelSpec = {
  name: 'layer_norm_dparam_final',
  storage: [f32('Partial'), f32('DW', 'read_write'), f32('DB', 'read_write')],
  params: [['n', 'u32'], ['chunks', 'u32']],
  workgroupSize: [PARAM_WG],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  if (col >= p.n) { return; }
  var dw = 0.0;
  var db = 0.0;
  for (var c = 0u; c < p.chunks; c++) {
    dw += Partial[2u * c * p.n + col];
    db += Partial[(2u * c + 1u) * p.n + col];
  }
  DW[col] = dw;
  DB[col] = db;
}`,
};

export interface LayerNormOut {
  y: Tensor;
  /** Per-row mean, shape x.shape[:-1]. */
  mean: Tensor;
  /** Per-row 1/sqrt(var + eps), shape x.shape[:-1]. */
  rstd: Tensor;
}

function checkParam(op: string, x: Tensor, n: number, t: Tensor, what: string): void {
  if (t.dtype !== 'f32' || !sameShape(t.shape, [n])) {
    throw new Error(`${op}: ${what} must be f32 [${n}] for x ${shapeStr(x.shape)}, got ${t.dtype} ${shapeStr(t.shape)}`);
  }
}

/** LayerNorm over the last axis: y = (x - mean)/sqrt(var + eps)·weight + bias, with the per-row statistics backward needs. */
export function launchLayerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number): LayerNormOut {
  const { rows, n } = rowsOf('layerNorm', x);
  checkParam('layerNorm', x, n, weight, 'weight');
  checkParam('layerNorm', x, n, bias, 'bias');
  const dev = x.device;
  const y = empty(dev, x.shape, 'f32', 'layer_norm');
  const mean = empty(dev, x.shape.slice(0, -1), 'f32', 'layer_norm_mean');
  const rstd = empty(dev, x.shape.slice(0, -1), 'f32', 'layer_norm_rstd');
  const xc = dense(x);
  const w = dense(weight);
  const b = dense(bias);
  const sg = rowSubgroup(dev, n, [xc.offset, w.offset, b.offset]);
  dev.dispatch(
    sg ? layerNormSubgroupSpec(sg) : layerNormSpec(rowWorkgroup(n)),
    [xc.buffer, w.buffer, b.buffer, y.buffer, mean.buffer, rstd.buffer],
    [rows, n, eps, xc.offset, w.offset, b.offset],
    grid1d(sg ? Math.ceil(rows / SG_ROWS) : rows, 1),
  );
  release(x, xc);
  release(weight, w);
  release(bias, b);
  return { y, mean, rstd };
}

export interface LayerNormGrads {
  dx: Tensor | null;
  dweight: Tensor | null;
  dbias: Tensor | null;
}

/** Gradients of LayerNorm given the output gradient `g` and the forward's saved x, weight, mean, rstd. */
export function launchLayerNormBackward(
  g: Tensor,
  x: Tensor,
  weight: Tensor,
  mean: Tensor,
  rstd: Tensor,
  need: { dx: boolean; dparams: boolean },
  /** dx is added into this contiguous tensor of x's shape, starting its buffer (and returned), instead of a new one. */
  accumulateInto?: Tensor,
): LayerNormGrads {
  const { rows, n } = rowsOf('layerNormBackward', x);
  if (!sameShape(g.shape, x.shape) || g.dtype !== 'f32') {
    throw new Error(`layerNormBackward: gradient ${g.dtype} ${shapeStr(g.shape)} for x ${shapeStr(x.shape)}`);
  }
  checkParam('layerNormBackward', x, n, weight, 'weight');
  for (const [t, what] of [
    [mean, 'mean'],
    [rstd, 'rstd'],
  ] as const) {
    if (t.size !== rows || !t.isContiguous()) throw new Error(`layerNormBackward: ${what} ${shapeStr(t.shape)} for x ${shapeStr(x.shape)}`);
  }
  const dev = x.device;
  const gc = dense(g);
  const xc = dense(x);
  const out: LayerNormGrads = { dx: null, dweight: null, dbias: null };
  if (need.dx) {
    const w = dense(weight);
    // The kernels write DX from the start of its buffer.
    if (accumulateInto && (!accumulateInto.isContiguous() || accumulateInto.offset !== 0 || !sameShape(accumulateInto.shape, x.shape) || accumulateInto.dtype !== 'f32')) {
      throw new Error(`layerNormBackward: cannot accumulate into ${accumulateInto} for x ${shapeStr(x.shape)}`);
    }
    const dx = accumulateInto ?? empty(dev, x.shape, 'f32', 'layer_norm_dx');
    const sg = rowSubgroup(dev, n, [gc.offset, xc.offset, w.offset]);
    dev.dispatch(
      sg ? layerNormDxSubgroupSpec(sg) : layerNormDxSpec(rowWorkgroup(n)),
      [gc.buffer, xc.buffer, w.buffer, mean.buffer, rstd.buffer, dx.buffer],
      [rows, n, gc.offset, xc.offset, w.offset, mean.offset, rstd.offset, accumulateInto ? 1 : 0],
      grid1d(sg ? Math.ceil(rows / SG_ROWS) : rows, 1),
    );
    release(weight, w);
    out.dx = dx;
  }
  if (need.dparams) {
    const cr = chunkRows(dev, rows);
    const chunks = Math.max(1, Math.ceil(rows / cr));
    const partial = empty(dev, [chunks, 2, n], 'f32', 'layer_norm_dparam_partial');
    const wg = columnWorkgroup(dev, PARAM_WG);
    dev.dispatch(
      layerNormDparamPartialSpec(wg),
      [gc.buffer, xc.buffer, mean.buffer, rstd.buffer, partial.buffer],
      [rows, n, cr, gc.offset, xc.offset, mean.offset, rstd.offset],
      [Math.ceil(n / wg), chunks, 1],
    );
    if (chunks === 1) {
      // One chunk: its partial sums are the gradients.
      out.dweight = partial.view([n], [1], 0);
      out.dbias = partial.view([n], [1], n);
    } else {
      const dweight = empty(dev, [n], 'f32', 'layer_norm_dweight');
      const dbias = empty(dev, [n], 'f32', 'layer_norm_dbias');
      dev.dispatch(LAYER_NORM_DPARAM_FINAL, [partial.buffer, dweight.buffer, dbias.buffer], [n, chunks], grid1d(n, PARAM_WG));
      out.dweight = dweight;
      out.dbias = dbias;
    }
    partial.dispose();
  }
  release(g, gc);
  release(x, xc);
  return out;
}

function l2NormalizeSpec(wg: number): KernelSpec {
  return {
    name: 'l2_normalize',
    storage: [f32('X'), f32('Y', 'read_write'), f32('Norm', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['eps', 'f32'], ['off_x', 'u32']],
    workgroupSize: [wg],
    code: `${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let row = ${ROW_INDEX};
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let bx = p.off_x + row * p.n;
  var ss = 0.0;
  for (var i = lid; i < p.n; i += WG_X) { let x = X[bx + i]; ss += x * x; }
  let norm = sqrt(wg_sum(ss, lid));
  let inv = 1.0 / max(norm, p.eps);
  let by = row * p.n;
  for (var i = lid; i < p.n; i += WG_X) { Y[by + i] = X[bx + i] * inv; }
  if (lid == 0u) { Norm[row] = norm; }
}`,
  };
}

// With d = max(‖x‖, eps): dx = (g - x·(g·x)/d²)/d where the norm is not clamped (g minus its
// component along y, over d), and g/d where it is (d is then the constant eps). No branch around
// the reduction: it stays in uniform control flow.
function l2NormalizeBackwardSpec(wg: number): KernelSpec {
  return {
    name: 'l2_normalize_backward',
    storage: [f32('G'), f32('X'), f32('Norm'), f32('DX', 'read_write')],
    params: [['rows', 'u32'], ['n', 'u32'], ['eps', 'f32'], ['off_g', 'u32'], ['off_x', 'u32'], ['off_n', 'u32']],
    workgroupSize: [wg],
    code: `${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(${ROW_ARGS}) {
  let row = ${ROW_INDEX};
  if (row >= p.rows) { return; }
  let lid = lid3.x;
  let bx = p.off_x + row * p.n;
  let bg = p.off_g + row * p.n;
  var gx = 0.0;
  for (var i = lid; i < p.n; i += WG_X) { gx += G[bg + i] * X[bx + i]; }
  gx = wg_sum(gx, lid);
  let norm = Norm[p.off_n + row];
  let d = max(norm, p.eps);
  let k = select(0.0, gx / (d * d), norm > p.eps);
  let bd = row * p.n;
  for (var i = lid; i < p.n; i += WG_X) { DX[bd + i] = (G[bg + i] - X[bx + i] * k) / d; }
}`,
  };
}

/** y = x / max(‖x‖₂, eps) over the last axis, with the per-row norm ‖x‖₂ backward needs. */
export function launchL2Normalize(x: Tensor, eps: number): { y: Tensor; norm: Tensor } {
  const { rows, n } = rowsOf('l2Normalize', x);
  if (!(eps > 0)) throw new Error(`l2Normalize: eps must be positive, got ${eps}`);
  const xc = dense(x);
  const y = empty(x.device, x.shape, 'f32', 'l2_normalize');
  const norm = empty(x.device, x.shape.slice(0, -1), 'f32', 'l2_normalize_norm');
  x.device.dispatch(l2NormalizeSpec(rowWorkgroup(n)), [xc.buffer, y.buffer, norm.buffer], [rows, n, eps, xc.offset], grid1d(rows, 1));
  release(x, xc);
  return { y, norm };
}

/** The input gradient of l2Normalize from the forward's x and norm and the output gradient `g`. */
export function launchL2NormalizeBackward(g: Tensor, x: Tensor, norm: Tensor, eps: number): Tensor {
  const { rows, n } = rowsOf('l2NormalizeBackward', x);
  if (g.dtype !== 'f32' || !sameShape(g.shape, x.shape)) {
    throw new Error(`l2NormalizeBackward: gradient ${g.dtype} ${shapeStr(g.shape)} for x ${shapeStr(x.shape)}`);
  }
  if (norm.size !== rows || !norm.isContiguous()) throw new Error(`l2NormalizeBackward: norm ${shapeStr(norm.shape)} for x ${shapeStr(x.shape)}`);
  const gc = dense(g);
  const xc = dense(x);
  const dx = empty(x.device, x.shape, 'f32', 'l2_normalize_dx');
  x.device.dispatch(
    l2NormalizeBackwardSpec(rowWorkgroup(n)),
    [gc.buffer, xc.buffer, norm.buffer, dx.buffer],
    [rows, n, eps, gc.offset, xc.offset, norm.offset],
    grid1d(rows, 1),
  );
  release(g, gc);
  release(x, xc);
  return dx;
}
