// Sum over any set of axes of a strided tensor. Each output element sums R inputs: one invocation
// per output when R is small; one workgroup per output with a tree reduction when R is large.
// Sums over the leading axes of a contiguous tensor, the bias gradients of every linear layer
// (rows × columns summed over rows), take a column-sum kernel instead: each invocation sums four
// columns over a chunk of rows with vec4 loads, and a second pass adds the chunks' partial sums.
// On lavapipe the tree reduction spent 4 ms on a [272, 64] bias gradient (a workgroup of 256
// invocations and eight barriers per output); see the kernels bench's 'sum over rows' row.
import { type KernelSpec, LINEAR_INDEX, WORKGROUP_REDUCE_WGSL, grid1d, memoSpecs } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { MAX_RANK, coalesce } from './layout.js';
import { columnWorkgroup, isCpuAdapter } from './adapter.js';

const WG = 256;
const ROW_THRESHOLD = 64;

function params(): [string, 'u32'][] {
  const p: [string, 'u32'][] = [['n_out', 'u32'], ['n_red', 'u32'], ['off', 'u32']];
  for (let i = 0; i < MAX_RANK; i++) p.push([`kd${i}`, 'u32'], [`ks${i}`, 'u32']);
  for (let i = 0; i < MAX_RANK; i++) p.push([`rd${i}`, 'u32'], [`rs${i}`, 'u32']);
  return p;
}

function indexFns(): string {
  const fn = (name: string, d: string, s: string, base: string) => {
    const lines = [`fn ${name}(linear: u32) -> u32 {`, `  var r = linear;`, `  var idx = ${base};`];
    for (let i = MAX_RANK - 1; i >= 0; i--) lines.push(`  idx += (r % p.${d}${i}) * p.${s}${i};`, `  r /= p.${d}${i};`);
    lines.push('  return idx;', '}');
    return lines.join('\n');
  };
  return `${fn('kept_at', 'kd', 'ks', 'p.off')}\n${fn('red_at', 'rd', 'rs', '0u')}`;
}

function spec(perRow: boolean): KernelSpec {
  const body = perRow
    ? `
${WORKGROUP_REDUCE_WGSL}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = wid.x + wid.y * nwg.x;
  if (o >= p.n_out) { return; }
  let base = kept_at(o);
  var acc = 0.0;
  for (var r = lid.x; r < p.n_red; r += WG_X) { acc += X[base + red_at(r)]; }
  let total = wg_sum(acc, lid.x);
  if (lid.x == 0u) { Out[o] = total; }
}`
    : `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = ${LINEAR_INDEX};
  if (o >= p.n_out) { return; }
  let base = kept_at(o);
  var acc = 0.0;
  for (var r = 0u; r < p.n_red; r++) { acc += X[base + red_at(r)]; }
  Out[o] = acc;
}`;
  return {
    name: 'sum',
    variant: perRow ? 'workgroup-per-output' : 'thread-per-output',
    storage: [
      { name: 'X', access: 'read', type: 'array<f32>' },
      { name: 'Out', access: 'read_write', type: 'array<f32>' },
    ],
    params: params(),
    workgroupSize: [WG],
    code: `${indexFns()}\n${body}`,
  };
}

/**
 * Rows per chunk of the column sum. On a CPU adapter one pass up to 16384 rows (an invocation
 * summing a few thousand rows takes microseconds; a second dispatch costs more); elsewhere chunks
 * that spread the rows over many invocations, and a second pass over the chunks.
 */
function colChunkRows(dev: Tensor['device'], rows: number): number {
  if (isCpuAdapter(dev) && rows <= 16384) return rows;
  return Math.max(64, Math.ceil(rows / 64));
}

/** Invocations per workgroup of the column sum on a GPU (see columnWorkgroup). */
const COL_WG = 64;

const columnSumSpec = memoSpecs((wg: number): KernelSpec => ({
  name: 'sum_columns',
  storage: [
    { name: 'X', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'Out', access: 'read_write', type: 'array<vec4<f32>>' },
  ],
  params: [['rows', 'u32'], ['c4', 'u32'], ['chunk_rows', 'u32'], ['off4', 'u32']],
  workgroupSize: [wg],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let col = gid.x;
  if (col >= p.c4) { return; }
  let r0 = wid.y * p.chunk_rows;
  let r1 = min(r0 + p.chunk_rows, p.rows);
  var acc = vec4<f32>(0.0);
  for (var r = r0; r < r1; r++) { acc += X[p.off4 + r * p.c4 + col]; }
  Out[wid.y * p.c4 + col] = acc;
}`,
}));

/** Σ over rows of a contiguous (rows, cols) view, cols and offset multiples of 4: chunk sums, then their sum. */
function columnSum(x: Tensor, rows: number, cols: number, out: Tensor): void {
  const dev = x.device;
  const c4 = cols / 4;
  const chunkRows = colChunkRows(dev, rows);
  const chunks = Math.ceil(rows / chunkRows);
  const wg = columnWorkgroup(dev, COL_WG);
  const spec = columnSumSpec(wg);
  const gx = Math.ceil(c4 / wg);
  if (chunks === 1) {
    dev.dispatch(spec, [x.buffer, out.buffer], [rows, c4, rows, x.offset / 4], [gx, 1, 1]);
    return;
  }
  const partial = empty(dev, [chunks, cols], 'f32', 'sum_columns_partial');
  dev.dispatch(spec, [x.buffer, partial.buffer], [rows, c4, chunkRows, x.offset / 4], [gx, chunks, 1]);
  dev.dispatch(spec, [partial.buffer, out.buffer], [chunks, c4, chunks, 0], [gx, 1, 1]);
  partial.dispose();
}

export function normalizeAxes(op: string, rank: number, axes: number | readonly number[] | undefined): number[] {
  const list = axes === undefined ? [...Array(rank).keys()] : typeof axes === 'number' ? [axes] : [...axes];
  const out = list.map((a) => {
    const n = a < 0 ? a + rank : a;
    if (!Number.isInteger(n) || n < 0 || n >= rank) throw new Error(`${op}: axis ${a} is out of range for rank ${rank}`);
    return n;
  });
  return [...new Set(out)].sort((x, y) => x - y);
}

/** Sum of `x` over `axes`; the result keeps reduced dims as size 1 when keepDims, else drops them. */
export function launchSum(x: Tensor, axes: readonly number[], keepDims: boolean): Tensor {
  if (x.dtype !== 'f32') throw new Error(`sum: expected f32, got ${x.dtype} ${shapeStr(x.shape)}`);
  const red = new Set(axes);
  const outShape = keepDims ? x.shape.map((d, i) => (red.has(i) ? 1 : d)) : x.shape.filter((_, i) => !red.has(i));
  const out = empty(x.device, outShape, 'f32', 'sum');
  const nOut = out.size;
  if (nOut === 0) return out;
  // The leading axes of a contiguous tensor: a (rows, cols) column sum.
  const lead = axes.length;
  const cols = x.size / Math.max(1, x.shape.slice(0, lead).reduce((a, b) => a * b, 1));
  if (lead > 0 && axes.every((a, i) => a === i) && x.isContiguous() && cols % 4 === 0 && x.offset % 4 === 0 && x.size > 0) {
    columnSum(x, x.size / cols, cols, out);
    return out;
  }
  const keptDims = x.shape.filter((_, i) => !red.has(i));
  const keptStrides = x.strides.filter((_, i) => !red.has(i));
  const redDims = x.shape.filter((_, i) => red.has(i));
  const redStrides = x.strides.filter((_, i) => red.has(i));
  const k = coalesce('sum', keptDims, [[...keptStrides]]);
  const r = coalesce('sum', redDims, [[...redStrides]]);
  const nRed = redDims.reduce((a, b) => a * b, 1);
  const values = [nOut, nRed, x.offset];
  for (let i = 0; i < MAX_RANK; i++) values.push(k.dims[i]!, k.strides[0]![i]!);
  for (let i = 0; i < MAX_RANK; i++) values.push(r.dims[i]!, r.strides[0]![i]!);
  const perRow = nRed >= ROW_THRESHOLD;
  x.device.dispatch(spec(perRow), [x.buffer, out.buffer], values, perRow ? grid1d(nOut, 1) : grid1d(nOut, WG));
  return out;
}
