// Sum over any set of axes of a strided tensor. Each output element sums R inputs: one invocation
// per output when R is small; one workgroup per output with a tree reduction when R is large.
import { type KernelSpec, LINEAR_INDEX, WORKGROUP_REDUCE_WGSL, grid1d } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { MAX_RANK, coalesce } from './layout.js';

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
