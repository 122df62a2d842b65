// Row gather and its deterministic scatter-add. Forward: out[b, k, :] = x[b, idx[b, k], :].
// Backward: dx[b, n, :] = Σ_{k : idx[b, k] = n} g[b, k, :], in ascending k, with no float atomics:
// the (row, position) pairs are sorted (bitonic, in workgroup memory up to SORT_BLOCK, then global
// merge passes), each row finds its segment of the sorted list by binary search, and one
// invocation per (row, column) sums its segment. Work is O(K log²K + R·D + K·D) for K gathered
// rows and R source rows, so a large vocabulary and a few repeated ids cost no more than needed.
// Out-of-range indices gather zeros and receive no gradient.
import { type KernelSpec, LINEAR_INDEX, floatType, grid1d, vec4Width } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { launchCopy } from './elementwise.js';

const WG = 256;
/** Elements sorted in one workgroup: two per invocation. */
const SORT_BLOCK = 2 * WG;
const SENTINEL = 0xffffffff;

function gatherSpec(width: 1 | 4): KernelSpec {
  const t = floatType(width);
  return {
    name: 'gather_rows',
    variant: t,
    storage: [
      { name: 'X', access: 'read', type: `array<${t}>` },
      { name: 'Idx', access: 'read', type: 'array<i32>' },
      { name: 'Out', access: 'read_write', type: `array<${t}>` },
    ],
    params: [['n', 'u32'], ['rows', 'u32'], ['k', 'u32'], ['d', 'u32'], ['off_x', 'u32'], ['off_idx', 'u32']],
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  let bk = i / p.d;
  let col = i % p.d;
  let id = Idx[p.off_idx + bk];
  if (id < 0 || u32(id) >= p.rows) { Out[i] = ${t}(0.0); return; }
  let b = bk / p.k;
  Out[i] = X[p.off_x + (b * p.rows + u32(id)) * p.d + col];
}`,
  };
}

/** (global row, position) pairs; padding and invalid indices get the sentinel row, which sorts last. */
const SORT_KEYS: KernelSpec = {
  name: 'scatter_keys',
  storage: [
    { name: 'Idx', access: 'read', type: 'array<i32>' },
    { name: 'Keys', access: 'read_write', type: 'array<vec2<u32>>' },
  ],
  params: [['n_pad', 'u32'], ['n', 'u32'], ['rows', 'u32'], ['k', 'u32'], ['off_idx', 'u32']],
  workgroupSize: [WG],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = ${LINEAR_INDEX};
  if (t >= p.n_pad) { return; }
  var row = ${SENTINEL}u;
  if (t < p.n) {
    let id = Idx[p.off_idx + t];
    if (id >= 0 && u32(id) < p.rows) { row = (t / p.k) * p.rows + u32(id); }
  }
  Keys[t] = vec2<u32>(row, t);
}`,
};

const LESS_WGSL = `
fn less(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.x < b.x || (a.x == b.x && a.y < b.y);
}`;

/**
 * Bitonic stages inside blocks of SORT_BLOCK keys held in workgroup memory. With merge = 0 it
 * sorts each block from scratch (stages k = 2 .. SORT_BLOCK); with merge = 1 it finishes stage
 * p.k, whose passes with distance ≥ SORT_BLOCK ran before as global passes.
 */
const SORT_LOCAL: KernelSpec = {
  name: 'bitonic_local',
  storage: [{ name: 'Keys', access: 'read_write', type: 'array<vec2<u32>>' }],
  params: [
    ['merge', 'u32'],
    ['k', 'u32'],
  ],
  workgroupSize: [WG],
  code: `${LESS_WGSL}
var<workgroup> tile: array<vec2<u32>, ${SORT_BLOCK}>;
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let block = (wid.x + wid.y * nwg.x) * ${SORT_BLOCK}u;
  let t = lid.x;
  tile[t] = Keys[block + t];
  tile[t + WG_X] = Keys[block + t + WG_X];
  var k = select(2u, p.k, p.merge == 1u);
  let k_end = select(${SORT_BLOCK}u, p.k, p.merge == 1u);
  loop {
    if (k > k_end) { break; }
    var j = min(k >> 1u, ${SORT_BLOCK / 2}u);
    loop {
      if (j == 0u) { break; }
      workgroupBarrier();
      let i = (t / j) * 2u * j + (t % j);
      let a = tile[i];
      let b = tile[i + j];
      let ascending = ((block + i) & k) == 0u;
      if (less(b, a) == ascending) {
        tile[i] = b;
        tile[i + j] = a;
      }
      j = j >> 1u;
    }
    k = k << 1u;
  }
  workgroupBarrier();
  Keys[block + t] = tile[t];
  Keys[block + t + WG_X] = tile[t + WG_X];
}`,
};

/** One compare-exchange pass of bitonic stage p.k at distance p.j ≥ SORT_BLOCK. */
const SORT_GLOBAL: KernelSpec = {
  name: 'bitonic_global',
  storage: [{ name: 'Keys', access: 'read_write', type: 'array<vec2<u32>>' }],
  params: [
    ['half', 'u32'],
    ['k', 'u32'],
    ['j', 'u32'],
  ],
  workgroupSize: [WG],
  code: `${LESS_WGSL}
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = ${LINEAR_INDEX};
  if (t >= p.half) { return; }
  let i = (t / p.j) * 2u * p.j + (t % p.j);
  let a = Keys[i];
  let b = Keys[i + p.j];
  if (less(b, a) == ((i & p.k) == 0u)) {
    Keys[i] = b;
    Keys[i + p.j] = a;
  }
}`,
};

/** starts[r] = first sorted position whose row is ≥ r, for r = 0 .. rows. */
const SEGMENTS: KernelSpec = {
  name: 'scatter_segments',
  storage: [
    { name: 'Keys', access: 'read', type: 'array<vec2<u32>>' },
    { name: 'Starts', access: 'read_write', type: 'array<u32>' },
  ],
  params: [
    ['rows', 'u32'],
    ['n_pad', 'u32'],
  ],
  workgroupSize: [WG],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = ${LINEAR_INDEX};
  if (r > p.rows) { return; }
  var lo = 0u;
  var hi = p.n_pad;
  while (lo < hi) {
    let mid = (lo + hi) >> 1u;
    if (Keys[mid].x < r) { lo = mid + 1u; } else { hi = mid; }
  }
  Starts[r] = lo;
}`,
};

/** dx[r, c] = Σ over r's segment of g[position, c]; rows with an empty segment get 0. */
function segmentSumSpec(width: 1 | 4): KernelSpec {
  const t = floatType(width);
  return {
    name: 'scatter_segment_sum',
    variant: t,
    storage: [
      { name: 'G', access: 'read', type: `array<${t}>` },
      { name: 'Keys', access: 'read', type: 'array<vec2<u32>>' },
      { name: 'Starts', access: 'read', type: 'array<u32>' },
      { name: 'Out', access: 'read_write', type: `array<${t}>` },
    ],
    params: [
      ['n', 'u32'],
      ['d', 'u32'],
      ['off_g', 'u32'],
    ],
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  let r = i / p.d;
  let col = i % p.d;
  let end = Starts[r + 1u];
  var acc = ${t}(0.0);
  for (var s = Starts[r]; s < end; s++) {
    acc += G[p.off_g + Keys[s].y * p.d + col];
  }
  Out[i] = acc;
}`,
  };
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function checkGather(op: string, x: Tensor, idx: Tensor): { b: number; rows: number; k: number; d: number } {
  if (x.dtype !== 'f32' || idx.dtype !== 'i32' || x.rank !== 3 || idx.rank !== 2 || idx.shape[0] !== x.shape[0]) {
    throw new Error(`${op}: expected x f32 (B, N, D) and idx i32 (B, K), got x ${x.dtype}${shapeStr(x.shape)}, idx ${idx.dtype}${shapeStr(idx.shape)}`);
  }
  const [b, rows, d] = x.shape as [number, number, number];
  const k = idx.shape[1]!;
  if (b * rows >= SENTINEL || b * k >= SENTINEL / 2) throw new Error(`${op}: x ${shapeStr(x.shape)} with idx ${shapeStr(idx.shape)} is too large to index with u32`);
  return { b, rows, k, d };
}

/** out[b, k, :] = x[b, idx[b, k], :] for x (B, N, D) f32 and idx (B, K) i32; (B, K, D). */
export function launchGatherRows(x: Tensor, idx: Tensor): Tensor {
  const { b, rows, k, d } = checkGather('gatherRows', x, idx);
  const out = empty(x.device, [b, k, d], 'f32', 'gather_rows');
  const n = out.size;
  if (n === 0) return out;
  const xc = x.isContiguous() ? x : launchCopy(x);
  const ic = idx.isContiguous() ? idx : launchCopy(idx);
  const w = vec4Width(d, xc.offset);
  x.device.dispatch(gatherSpec(w), [xc.buffer, ic.buffer, out.buffer], [n / w, rows, k, d / w, xc.offset / w, ic.offset], grid1d(n / w, WG));
  if (xc !== x) xc.dispose();
  if (ic !== idx) ic.dispose();
  return out;
}

/**
 * dx (B, N, D) with dx[b, n, :] = Σ_{k : idx[b, k] = n} g[b, k, :], summed in ascending k so that
 * the result is the same on every run; g is (B, K, D).
 */
export function launchScatterAddRows(g: Tensor, idx: Tensor, rows: number): Tensor {
  if (g.dtype !== 'f32' || g.rank !== 3 || idx.dtype !== 'i32' || idx.rank !== 2 || g.shape[0] !== idx.shape[0] || g.shape[1] !== idx.shape[1]) {
    throw new Error(`scatterAddRows: expected g f32 (B, K, D) and idx i32 (B, K), got g ${g.dtype}${shapeStr(g.shape)}, idx ${idx.dtype}${shapeStr(idx.shape)}`);
  }
  if (!Number.isInteger(rows) || rows < 0) throw new Error(`scatterAddRows: invalid row count ${rows}`);
  const [b, k, d] = g.shape as [number, number, number];
  const dev = g.device;
  const out = empty(dev, [b, rows, d], 'f32', 'scatter_add_rows');
  if (out.size === 0) return out;
  const totalRows = b * rows;
  const n = b * k;
  if (totalRows >= SENTINEL || n >= SENTINEL / 2) throw new Error(`scatterAddRows: g ${shapeStr(g.shape)} into ${rows} rows is too large to index with u32`);
  const nPad = Math.max(SORT_BLOCK, nextPow2(n));
  const keys = empty(dev, [nPad, 2], 'u32', 'scatter_keys');
  const starts = empty(dev, [totalRows + 1], 'u32', 'scatter_starts');
  const ic = idx.isContiguous() ? idx : launchCopy(idx);
  const gc = g.isContiguous() ? g : launchCopy(g);
  dev.dispatch(SORT_KEYS, [ic.buffer, keys.buffer], [nPad, n, rows, k, ic.offset], grid1d(nPad, WG));
  const blocks = grid1d(nPad / SORT_BLOCK, 1);
  dev.dispatch(SORT_LOCAL, [keys.buffer], [0, 0], blocks);
  for (let stage = 2 * SORT_BLOCK; stage <= nPad; stage *= 2) {
    for (let j = stage / 2; j >= SORT_BLOCK; j /= 2) dev.dispatch(SORT_GLOBAL, [keys.buffer], [nPad / 2, stage, j], grid1d(nPad / 2, WG));
    dev.dispatch(SORT_LOCAL, [keys.buffer], [1, stage], blocks);
  }
  dev.dispatch(SEGMENTS, [keys.buffer, starts.buffer], [totalRows, nPad], grid1d(totalRows + 1, WG));
  const w = vec4Width(d, gc.offset);
  dev.dispatch(segmentSumSpec(w), [gc.buffer, keys.buffer, starts.buffer, out.buffer], [out.size / w, d / w, gc.offset / w], grid1d(out.size / w, WG));
  keys.dispose();
  starts.dispose();
  if (ic !== idx) ic.dispose();
  if (gc !== g) gc.dispose();
  return out;
}
