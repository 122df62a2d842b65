// SsVP token selection: per image the K largest of N scores, returned in ascending index order,
// optionally fused with the gather of [CLS; selected tokens] that feeds the last ViT layer.
//
// One workgroup per image. A radix select over order-preserving u32 keys finds the K-th largest
// key in 32 counting passes (one atomic count and one barrier each, any N, no sort); then each
// invocation walks a contiguous chunk of the scores, so the selected indices come out in index
// order from one exclusive scan of per-chunk counts. Ties at the threshold go to the lower index.
// Ordering: NaN ranks below every number (below −∞), NaNs among themselves by index; −0 = +0.
import { type KernelSpec } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { launchCopy, launchFill } from './elementwise.js';

const WG = 256;

function selectSpec(gather: boolean): KernelSpec {
  return {
    name: 'topk_select',
    variant: gather ? 'gather' : 'ids',
    storage: [
      { name: 'S', access: 'read', type: 'array<f32>' },
      { name: 'Ids', access: 'read_write', type: 'array<i32>' },
      ...(gather
        ? [
            { name: 'X', access: 'read', type: 'array<f32>' } as const,
            { name: 'Out', access: 'read_write', type: 'array<f32>' } as const,
          ]
        : []),
    ],
    params: [
      ['n', 'u32'],
      ['k', 'u32'],
      ['s_off', 'u32'],
      ['s_sb', 'u32'],
      ['dim', 'u32'],
      ['x_off', 'u32'],
      ['x_sb', 'u32'],
      ['x_sn', 'u32'],
    ],
    workgroupSize: [WG],
    code: `
var<workgroup> counts: array<atomic<u32>, 33>;
var<workgroup> above: array<u32, WG_X>;
var<workgroup> ties: array<u32, WG_X>;

// Order-preserving key: larger float, larger key; NaN is 0, below −∞; −0 and +0 are equal.
fn key_of(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let mag = bits & 0x7fffffffu;
  if (mag > 0x7f800000u) { return 0u; }
  if (mag == 0u) { return 0x80000000u; }
  if ((bits & 0x80000000u) != 0u) { return ~bits; }
  return bits | 0x80000000u;
}

@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.x;
  let base = p.s_off + b * p.s_sb;
  // thr = the largest t with #{key ≥ t} ≥ k, built one bit at a time from the top.
  var thr = 0u;
  for (var i = 0u; i < 32u; i++) {
    let cand = thr | (1u << (31u - i));
    var c = 0u;
    for (var e = lid.x; e < p.n; e += WG_X) { c += select(0u, 1u, key_of(S[base + e]) >= cand); }
    if (c > 0u) { atomicAdd(&counts[i], c); }
    workgroupBarrier();
    if (atomicLoad(&counts[i]) >= p.k) { thr = cand; }
  }
  let chunk = (p.n + WG_X - 1u) / WG_X;
  let lo = min(p.n, lid.x * chunk);
  let hi = min(p.n, lo + chunk);
  var gt = 0u;
  var eq = 0u;
  for (var e = lo; e < hi; e++) {
    let key = key_of(S[base + e]);
    gt += select(0u, 1u, key > thr);
    eq += select(0u, 1u, key == thr);
  }
  above[lid.x] = gt;
  ties[lid.x] = eq;
  atomicAdd(&counts[32], gt);
  workgroupBarrier();
  // One serial exclusive scan: ties taken in index order until k is reached.
  if (lid.x == 0u) {
    let tie_budget = p.k - atomicLoad(&counts[32]);
    var tie_before = 0u;
    var sel_before = 0u;
    for (var t = 0u; t < WG_X; t++) {
      let taken = min(ties[t], tie_budget - min(tie_budget, tie_before));
      let sel = above[t] + taken;
      tie_before += ties[t];
      above[t] = sel_before;
      ties[t] = taken;
      sel_before += sel;
    }
  }
  workgroupBarrier();
  var pos = above[lid.x];
  var take = ties[lid.x];
  let out_base = b * p.k;
  for (var e = lo; e < hi; e++) {
    let key = key_of(S[base + e]);
    var chosen = key > thr;
    if (key == thr && take > 0u) { chosen = true; take--; }
    if (chosen) {
      Ids[out_base + pos] = i32(e);
      pos++;
    }
  }
${
  gather
    ? `  storageBarrier();
  workgroupBarrier();
  // [CLS; selected tokens]: token 0 is CLS, patch j is token j + 1.
  let rows = p.k + 1u;
  for (var e = lid.x; e < rows * p.dim; e += WG_X) {
    let r = e / p.dim;
    let c = e % p.dim;
    var tok = 0u;
    if (r > 0u) { tok = u32(Ids[out_base + r - 1u]) + 1u; }
    Out[b * rows * p.dim + e] = X[p.x_off + b * p.x_sb + tok * p.x_sn + c];
  }`
    : ''
}
}`,
  };
}

function checkScores(op: string, scores: Tensor, k: number): [number, number] {
  if (scores.rank !== 2 || scores.dtype !== 'f32') throw new Error(`${op}: scores must be f32 (B, N), got ${scores.dtype} ${shapeStr(scores.shape)}`);
  const [B, N] = scores.shape as [number, number];
  if (!Number.isInteger(k) || k < 1 || k > N) throw new Error(`${op}: k = ${k} outside [1, N = ${N}] for scores ${shapeStr(scores.shape)}`);
  if (B < 1 || B > 65535) throw new Error(`${op}: batch ${B} outside [1, 65535] for scores ${shapeStr(scores.shape)}`);
  return [B, N];
}

function rowMajor(x: Tensor): Tensor {
  return x.strides[x.rank - 1] === 1 || x.shape[x.rank - 1] === 1 ? x : launchCopy(x);
}

/** Indices (B, K) i32 of the K largest scores per row, ascending; ties to the lower index, NaN lowest. */
export function launchTopK(scores: Tensor, k: number): Tensor {
  const [B, N] = checkScores('topk', scores, k);
  const s = rowMajor(scores);
  const ids = empty(scores.device, [B, k], 'i32', 'topk_ids');
  scores.device.dispatch(selectSpec(false), [s.buffer, ids.buffer], [N, k, s.offset, s.strides[0]!, 0, 0, 0, 0], [B, 1, 1]);
  if (s !== scores) s.dispose();
  return ids;
}

/**
 * SsVP selection fused with its gather: from x (B, N+1, D) (token 0 CLS, patch j token j+1) and
 * scores (B, N), `tokens` (B, K+1, D) = [CLS; tokens of the K top patches in ascending order]
 * and `ids` (B, K) i32, the patch indices.
 */
export function launchTopKGather(x: Tensor, scores: Tensor, k: number): { tokens: Tensor; ids: Tensor } {
  const [B, N] = checkScores('topkGather', scores, k);
  if (x.rank !== 3 || x.dtype !== 'f32' || x.shape[0] !== B || x.shape[1] !== N + 1) {
    throw new Error(`topkGather: x must be f32 (B, N+1, D) for scores (B, N); got x ${x.dtype} ${shapeStr(x.shape)}, scores ${shapeStr(scores.shape)}`);
  }
  const D = x.shape[2]!;
  const s = rowMajor(scores);
  const xs = rowMajor(x);
  const ids = empty(x.device, [B, k], 'i32', 'topk_ids');
  const tokens = empty(x.device, [B, k + 1, D], 'f32', 'topk_tokens');
  x.device.dispatch(
    selectSpec(true),
    [s.buffer, ids.buffer, xs.buffer, tokens.buffer],
    [N, k, s.offset, s.strides[0]!, D, xs.offset, xs.strides[0]!, xs.strides[1]!],
    [B, 1, 1],
  );
  if (s !== scores) s.dispose();
  if (xs !== x) xs.dispose();
  return { tokens, ids };
}

const SCATTER: KernelSpec = {
  name: 'topk_scatter',
  storage: [
    { name: 'G', access: 'read', type: 'array<f32>' },
    { name: 'Ids', access: 'read', type: 'array<i32>' },
    { name: 'Out', access: 'read_write', type: 'array<f32>' },
  ],
  params: [
    ['k', 'u32'],
    ['n', 'u32'],
    ['dim', 'u32'],
    ['g_off', 'u32'],
    ['g_sb', 'u32'],
    ['g_sn', 'u32'],
    ['ids_off', 'u32'],
  ],
  workgroupSize: [64],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let r = gid.y;
  let b = gid.z;
  if (c >= p.dim) { return; }
  var tok = 0u;
  if (r > 0u) { tok = u32(Ids[p.ids_off + b * p.k + r - 1u]) + 1u; }
  Out[(b * (p.n + 1u) + tok) * p.dim + c] = G[p.g_off + b * p.g_sb + r * p.g_sn + c];
}`,
};

/**
 * Backward of the gather: dx (B, N+1, D) with g (B, K+1, D) at CLS and the selected tokens, zeros
 * elsewhere. The indices are distinct, so each element is written once.
 */
export function launchTopKScatter(g: Tensor, ids: Tensor, n: number): Tensor {
  const [B, K1, D] = g.shape as [number, number, number];
  if (g.rank !== 3 || ids.rank !== 2 || ids.dtype !== 'i32' || ids.shape[0] !== B || ids.shape[1] !== K1 - 1 || !ids.isContiguous()) {
    throw new Error(`topkScatter: g (B, K+1, D) and contiguous i32 ids (B, K) do not match: g ${shapeStr(g.shape)}, ids ${ids.dtype} ${shapeStr(ids.shape)}`);
  }
  if (B > 65535 || K1 > 65535) throw new Error(`topkScatter: g ${shapeStr(g.shape)} exceeds the dispatch grid`);
  const gs = rowMajor(g);
  const out = empty(g.device, [B, n + 1, D], 'f32', 'topk_scatter');
  launchFill(out, 0);
  g.device.dispatch(SCATTER, [gs.buffer, ids.buffer, out.buffer], [K1 - 1, n, D, gs.offset, gs.strides[0]!, gs.strides[1]!, ids.offset], [Math.ceil(D / 64), K1, B]);
  if (gs !== g) gs.dispose();
  return out;
}
