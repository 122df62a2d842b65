// Fused multi-head attention, FlashAttention-2 style: the forward streams key/value tiles with an
// online softmax, so the N×N scores never reach global memory, and saves only the per-row
// log-sum-exp; the backward recomputes the probabilities from Q, K and that LSE. Two families:
// - subgroup kernels (CPU adapters that fix subgroups at 8 lanes, head dim a multiple of 4 up to
//   64; see "Subgroup kernels" below): tiles go straight from storage to the lanes by
//   subgroupBroadcast, and the backward is one kernel per head that also accumulates dQ
//   (10·N²·d flops);
// - portable kernels (any adapter): tiles pass through workgroup memory, and since WGSL has no
//   float atomics the backward takes two passes (14·N²·d flops), one over query rows (dQ, and
//   D = rowsum(dO ⊙ O)), one over key rows (dK, dV). Each invocation owns whole rows (four of
//   them): on a SIMD CPU adapter the lanes then vectorise the head dimension's loops with no
//   cross-lane reduction, and the tile in workgroup memory is read by all rows of the block.
// Measured on lavapipe at ViT-B/16@448 (B1 H12 N785 d64) by the kernels bench (apps/bench,
// `attention ...` rows).
//
// Layout: q, k, v, dO are (B, H, N, d) views with any strides over B, H, N and a unit stride over
// d, so q, k and v can be views of one (B, N, 3, H, d) projection without copies. Outputs (O, dQ,
// dK, dV) are stored as (B, N, H, d) and returned as (B, H, N, d) views of that storage: permuting
// them back to (B, N, H, d) gives a contiguous tensor, so merging heads is a free reshape.
import type { KernelSpec } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { launchAssign, launchCopy } from './elementwise.js';
import { fixedSubgroupSize, isCpuAdapter } from './adapter.js';
import { LANE_DEFAULT_KEYS, LANE_MAX_D, LANE_MAX_KEYS, laneBackwardKeySpec, laneBackwardQuerySpec, laneForwardSpec } from './attention-lanes.js';
import { COMMON_PARAMS, LOG2E, MASKED, OPERAND_PARAMS, rowFn } from './attention-common.js';

export interface AttentionOptions {
  /** Query i attends only to keys j ≤ i (CLIP's text transformer). Needs Nq = Nk. */
  causal?: boolean;
  /** Keys j ≥ keyLength are masked (padding). Default Nk. */
  keyLength?: number;
  /** Score scale. Default 1/√d. */
  scale?: number;
  /**
   * Kernels that share tile rows by subgroupBroadcast; default: where the adapter fixes subgroups
   * at 8 lanes and the head dim is a multiple of 4 up to 64. false forces the portable kernels
   * (tests cover both).
   */
  subgroups?: boolean;
  /** Kernel family, overriding `subgroups`; default: see attentionKernel. */
  kernel?: AttentionKernel;
}

/** The kernel families: short sequences lane by lane, long ones in subgroup tiles, and the portable tiles. */
export type AttentionKernel = 'lanes' | 'subgroup' | 'portable';
export const ATTENTION_KERNELS: readonly AttentionKernel[] = ['lanes', 'subgroup', 'portable'];

/** Widest head dimension: the per-row registers (q, o, dq...) and the tiles must fit. */
export const MAX_HEAD_DIM = 256;

/** A (B, H, N, d) operand: storage offset and strides of its first three dims. */
interface Operand {
  t: Tensor;
  copy: boolean;
}

/**
 * x as a kernel reads it: copied when its last dim is strided, or, for the subgroup kernels
 * (`vec4`: they bind operands as vec4 arrays), when its offset or a stride is not a multiple of 4.
 */
function operand(op: string, name: string, x: Tensor, vec4: boolean): Operand {
  if (x.dtype !== 'f32') throw new Error(`${op}: ${name} must be f32, got ${x.dtype} ${shapeStr(x.shape)}`);
  if (x.rank !== 4) throw new Error(`${op}: ${name} must be (B, H, N, d), got ${shapeStr(x.shape)}`);
  const unit = x.strides[3] === 1 || x.shape[3] === 1;
  if (unit && (!vec4 || [x.offset, ...x.strides.slice(0, 3)].every((v) => v % 4 === 0))) return { t: x, copy: false };
  return { t: launchCopy(x), copy: true };
}

function layout(x: Tensor): number[] {
  return [x.offset, x.strides[0]!, x.strides[1]!, x.strides[2]!];
}

function release(...ops: Operand[]): void {
  for (const o of ops) if (o.copy) o.t.dispose();
}

function subgroupAble(d: number, q: Tensor): boolean {
  return fixedSubgroupSize(q.device) === 8 && d % 4 === 0 && d <= SG_MAX_HEAD_DIM;
}

/**
 * The family that runs this attention: the one asked for (checked), else on CPU adapters the lane
 * kernels up to LANE_DEFAULT_KEYS keys, the subgroup kernels beyond (on 8-lane subgroups), the
 * portable ones elsewhere.
 */
export function attentionKernel(q: Tensor, k: Tensor, opts: AttentionOptions = {}): AttentionKernel {
  const d = q.shape[3]!;
  const nk = k.shape[2]!;
  const laneAble = d % 4 === 0 && d <= LANE_MAX_D && nk <= LANE_MAX_KEYS;
  const want = opts.kernel ?? (opts.subgroups === true ? 'subgroup' : opts.subgroups === false ? 'portable' : undefined);
  if (want === 'subgroup' && !subgroupAble(d, q)) {
    throw new Error(`attention: the subgroup kernels need subgroups fixed at 8 lanes and a head dim that is a multiple of 4 up to ${SG_MAX_HEAD_DIM} (d = ${d})`);
  }
  if (want === 'lanes' && !laneAble) throw new Error(`attention: the lane kernels need a head dim that is a multiple of 4 up to ${LANE_MAX_D} and at most ${LANE_MAX_KEYS} keys (d = ${d}, ${nk} keys)`);
  if (want) return want;
  if (isCpuAdapter(q.device) && laneAble && nk <= LANE_DEFAULT_KEYS) return 'lanes';
  return subgroupAble(d, q) ? 'subgroup' : 'portable';
}

/** A new (B, H, N, d) tensor stored as (B, N, H, d). */
function headsLast(like: Tensor, n: number, label: string): Tensor {
  const [B, H, , d] = like.shape as [number, number, number, number];
  const base = empty(like.device, [B, n, H, d], 'f32', label);
  const out = base.view([B, H, n, d], [n * H * d, d, H * d, 1], 0);
  base.dispose();
  return out;
}

interface Resolved {
  B: number;
  H: number;
  Nq: number;
  Nk: number;
  d: number;
  scale: number;
  keyLength: number;
  causal: boolean;
}

function resolve(op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Resolved {
  const [B, H, Nq, d] = q.shape as [number, number, number, number];
  const Nk = k.shape[2]!;
  const shapes = `q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)}`;
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw new Error(`${op}: q, k, v must be (B, H, N, d); got ${shapes}`);
  if (k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== d || v.shape[0] !== B || v.shape[1] !== H || v.shape[2] !== Nk || v.shape[3] !== d) {
    throw new Error(`${op}: k and v must be (B, H, Nk, d) matching q (B, H, Nq, d); got ${shapes}`);
  }
  if (d < 1 || d > MAX_HEAD_DIM) throw new Error(`${op}: head dim ${d} outside [1, ${MAX_HEAD_DIM}] (${shapes})`);
  if (Nq < 1 || Nk < 1) throw new Error(`${op}: empty sequence (${shapes})`);
  const causal = Boolean(opts.causal);
  if (causal && Nq !== Nk) throw new Error(`${op}: causal attention needs Nq = Nk; got ${shapes}`);
  const keyLength = opts.keyLength ?? Nk;
  if (!Number.isInteger(keyLength) || keyLength < 1 || keyLength > Nk) throw new Error(`${op}: keyLength ${keyLength} outside [1, ${Nk}] (${shapes})`);
  if (B * H > 65535) throw new Error(`${op}: B·H = ${B * H} exceeds 65535 workgroups (${shapes})`);
  for (const t of [k, v]) if (t.device !== q.device) throw new Error(`${op}: q, k, v live on different devices`);
  return { B, H, Nq, Nk, d, scale: opts.scale ?? 1 / Math.sqrt(d), keyLength, causal };
}

/** Rows per tile in workgroup memory: a multiple of the 8-row step; two tiles stay within 16 KiB. */
function tileRows(d: number): number {
  let r = 32;
  while (r > 8 && r * d > 2048) r >>= 1;
  return r;
}

/**
 * Rows (queries, or keys in the dK/dV pass) per invocation, and invocations per workgroup: each
 * invocation owns ROWS_PER_LANE rows so that every tile element it loads feeds that many dot
 * products (2.3× the throughput of one row per invocation on lavapipe; 8 rows compile 5× slower
 * for another 1.3×). Workgroups of 32 invocations run the long ViT sequences 1.4× faster than 8
 * (fewer tile loads per row); short sequences (CLIP text) take 8. Only two sizes, since each
 * workgroup size is another pipeline to compile.
 */
const ROWS_PER_LANE = 4;

function blockLanes(n: number): number {
  return n <= 8 * ROWS_PER_LANE ? 8 : 32;
}

// The per-row vectors (q, o, dq, k, v, ...) are vec4 arrays walked by loops over D/4 with
// uniform indices, and each step handles 8 tile rows: one load of the 8 tile vectors feeds the
// dot products (or multiply-adds) of all rows the invocation owns. (Fully unrolled straight-line
// code would keep the vectors in SIMD registers but takes a CPU adapter's compiler minutes per
// pipeline; the loop bound is a uniform parameter, not the constant D4, so that the compiler does
// not unroll them either.)
const range = (n: number) => [...Array(n).keys()];

/** WGSL: `a`'s dot products with the four tile rows `v<o>`..`v<o+3>`, as a vec4. */
const dots = (a: string, v: string, o: number) => `vec4<f32>(${range(4).map((t) => `dot(${a}, ${v}${o + t})`).join(', ')})`;

/** Joins `f(r)` over the `rpl` rows one invocation owns. */
const eachRow = (rpl: number) => (f: (r: number) => string, sep = '\n') => range(rpl).map(f).join(sep);

/** WGSL: `let <v>0..<v>7` = element c of tile rows g..g+7 of a workgroup tile. */
function tileRows8(tile: string, v: string): string {
  return range(8).map((t) => `          let ${v}${t} = ${tile}[(g + ${t}u) * D4 + c];`).join('\n');
}

/** Stores register array `reg` (times `factor`) to `buffer` at row address `at`, dropping lanes past D. */
function storeRow(buffer: string, at: string, reg: string, factor: string, d: number): string {
  const lanes = range(4)
    .map((t) => (d % 4 === 0 ? `${buffer}[${at} + 4u * c + ${t}u] = v[${t}];` : `if (4u * c + ${t}u < D) { ${buffer}[${at} + 4u * c + ${t}u] = v[${t}]; }`))
    .join(' ');
  return `    for (var c = 0u; c < p.d4; c++) { let v = ${reg}[c]${factor}; ${lanes} }`;
}

/** WGSL: `fn ld_<B>(a: u32, c: u32) -> vec4<f32>`, elements c..c+3 of a row at a (zeros past D). */
function loader(buffer: string, d: number): string {
  const lane = (t: number) => (d % 4 === 0 || t === 0 ? `${buffer}[a + ${t}u]` : `select(0.0, ${buffer}[a + ${t}u], c + ${t}u < D)`);
  return `fn ld_${buffer}(a: u32, c: u32) -> vec4<f32> { return vec4<f32>(${range(4).map(lane).join(', ')}); }`;
}

/**
 * Cooperative load of rows r0.. of a (b, h) operand into a vec4 tile; rows from count up to the
 * next multiple of 8 are zero (the 8-row steps read them), rows beyond are never read.
 */
function loadTile(tile: string, buffer: string, at: string, rowsConst: string, count: string, scale = ''): string {
  return `    for (var e = lid.x; e < min(${rowsConst}, (${count} + 7u) & ~7u) * D4; e += WG_X) {
      let rr = e / D4;
      let c = (e % D4) * 4u;
      var val = vec4<f32>(0.0);
      if (rr < ${count}) { val = ld_${buffer}(${at}(b, h, r0 + rr) + c, c)${scale}; }
      ${tile}[e] = val;
    }`;
}

function headerConsts(d: number, tile: number): string {
  return `const D: u32 = ${d}u;\nconst D4: u32 = ${Math.ceil(d / 4)}u;\nconst BT: u32 = ${tile}u;`;
}

function forwardSpec(d: number, bc: number, br: number, rpl: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  const each = eachRow(rpl);
  const keyRegs = (tile: string, v: string) => tileRows8(tile, v);
  return {
    name: 'attention_forward',
    variant: `d${d}_bc${bc}_r${rpl}`,
    storage: [
      { name: 'Q', access: 'read', type: 'array<f32>' },
      { name: 'K', access: 'read', type: 'array<f32>' },
      { name: 'V', access: 'read', type: 'array<f32>' },
      { name: 'O', access: 'read_write', type: 'array<f32>' },
      { name: 'Lse', access: 'read_write', type: 'array<f32>' },
    ],
    params: [...COMMON_PARAMS, ...OPERAND_PARAMS('q'), ...OPERAND_PARAMS('k'), ...OPERAND_PARAMS('v'), ...OPERAND_PARAMS('o'), ['lse_off', 'u32']],
    workgroupSize: [br],
    code: `
${headerConsts(d, bc)}
const RPL: u32 = ${rpl}u;
var<workgroup> Ks: array<vec4<f32>, ${bc * d4}>;
var<workgroup> Vs: array<vec4<f32>, ${bc * d4}>;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('o')}
${loader('Q', d)}
${loader('K', d)}
${loader('V', d)}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  // Each invocation owns RPL query rows, WG_X apart: the key tile's loads are shared by all.
  let row0 = wid.x * WG_X * RPL;
  var q: array<vec4<f32>, ${rpl * d4}>;
  var o: array<vec4<f32>, ${rpl * d4}>;
${each((r) => `  let i${r} = row0 + ${r}u * WG_X + lid.x;
  let qa${r} = q_at(b, h, min(i${r}, p.nq - 1u));
  for (var c = 0u; c < p.d4; c++) { q[${r}u * D4 + c] = ld_Q(qa${r} + 4u * c, 4u * c) * p.scale_log2; o[${r}u * D4 + c] = vec4<f32>(0.0); }
  var m${r} = ${MASKED};
  var l${r} = 0.0;
  var lim${r} = p.key_len;`)}
  // Keys row i may see: j < lim_i. The block's loop bound is the largest lim of its rows.
  var kend = p.key_len;
  if (p.causal != 0u) {
    kend = min(kend, min(row0 + WG_X * RPL, p.nq));
${each((r) => `    lim${r} = min(lim${r}, i${r} + 1u);`)}
  }
  for (var j0 = 0u; j0 < kend; j0 += BT) {
    let nj = min(BT, kend - j0);
    let r0 = j0;
${loadTile('Ks', 'K', 'k_at', 'BT', 'nj')}
${loadTile('Vs', 'V', 'v_at', 'BT', 'nj')}
    workgroupBarrier();
    for (var g = 0u; g < nj; g += 8u) {
${each((r) => `      var sa${r} = vec4<f32>(0.0);\n      var sb${r} = vec4<f32>(0.0);`)}
      for (var c = 0u; c < p.d4; c++) {
${keyRegs('Ks', 'k')}
${each((r) => `          let qr${r} = q[${r}u * D4 + c];\n          sa${r} += ${dots(`qr${r}`, 'k', 0)};\n          sb${r} += ${dots(`qr${r}`, 'k', 4)};`)}
      }
      let ja = vec4<u32>(j0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
      let jb = ja + vec4<u32>(4u);
${each(
  (r) => `      let ma${r} = select(vec4<f32>(${MASKED}), sa${r}, ja < vec4<u32>(lim${r}));
      let mb${r} = select(vec4<f32>(${MASKED}), sb${r}, jb < vec4<u32>(lim${r}));
      let mt${r} = max(m${r}, max(max(max(ma${r}.x, ma${r}.y), max(ma${r}.z, ma${r}.w)), max(max(mb${r}.x, mb${r}.y), max(mb${r}.z, mb${r}.w))));
      let alpha${r} = exp2(m${r} - mt${r});
      let pa${r} = exp2(ma${r} - vec4<f32>(mt${r}));
      let pb${r} = exp2(mb${r} - vec4<f32>(mt${r}));
      l${r} = l${r} * alpha${r} + dot(pa${r}, vec4<f32>(1.0)) + dot(pb${r}, vec4<f32>(1.0));
      m${r} = mt${r};`,
)}
      for (var c = 0u; c < p.d4; c++) {
${keyRegs('Vs', 'v')}
${each(
  (r) =>
    `          o[${r}u * D4 + c] = o[${r}u * D4 + c] * alpha${r} + ${range(8)
      .map((t) => `p${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * v${t}`)
      .join(' + ')};`,
)}
      }
    }
    workgroupBarrier();
  }
${each(
  (r) => `  if (i${r} < p.nq) {
    let oa = o_at(b, h, i${r});
    let inv = 1.0 / l${r};
    for (var c = 0u; c < p.d4; c++) { let v = o[${r}u * D4 + c] * inv; ${range(4)
      .map((t) => (d % 4 === 0 ? `O[oa + 4u * c + ${t}u] = v[${t}];` : `if (4u * c + ${t}u < D) { O[oa + 4u * c + ${t}u] = v[${t}]; }`))
      .join(' ')} }
    Lse[p.lse_off + (b * p.heads + h) * p.nq + i${r}] = (m${r} + log2(l${r})) * ${Math.LN2};
  }`,
)}
}`,
  };
}

function backwardQuerySpec(d: number, bc: number, br: number, rpl: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  const each = eachRow(rpl);
  const tileRegs = (tile: string, v: string) => tileRows8(tile, v);
  return {
    name: 'attention_backward_dq',
    variant: `d${d}_bc${bc}_r${rpl}`,
    storage: [
      { name: 'Q', access: 'read', type: 'array<f32>' },
      { name: 'K', access: 'read', type: 'array<f32>' },
      { name: 'V', access: 'read', type: 'array<f32>' },
      { name: 'O', access: 'read', type: 'array<f32>' },
      { name: 'DO', access: 'read', type: 'array<f32>' },
      { name: 'Lse', access: 'read', type: 'array<f32>' },
      { name: 'DQ', access: 'read_write', type: 'array<f32>' },
      { name: 'Delta', access: 'read_write', type: 'array<f32>' },
    ],
    params: [
      ...COMMON_PARAMS,
      ['scale', 'f32'],
      ...OPERAND_PARAMS('q'),
      ...OPERAND_PARAMS('k'),
      ...OPERAND_PARAMS('v'),
      ...OPERAND_PARAMS('o'),
      ...OPERAND_PARAMS('do'),
      ...OPERAND_PARAMS('dq'),
      ['lse_off', 'u32'],
    ],
    workgroupSize: [br],
    code: `
${headerConsts(d, bc)}
const RPL: u32 = ${rpl}u;
var<workgroup> Ks: array<vec4<f32>, ${bc * d4}>;
var<workgroup> Vs: array<vec4<f32>, ${bc * d4}>;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('o')}
${rowFn('do')}
${rowFn('dq')}
${loader('Q', d)}
${loader('K', d)}
${loader('V', d)}
${loader('O', d)}
${loader('DO', d)}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let row0 = wid.x * WG_X * RPL;
  let rows = (b * p.heads + h) * p.nq;
  var q: array<vec4<f32>, ${rpl * d4}>;
  var gr: array<vec4<f32>, ${rpl * d4}>;
  var dq: array<vec4<f32>, ${rpl * d4}>;
${each((r) => `  let i${r} = row0 + ${r}u * WG_X + lid.x;
  let ic${r} = min(i${r}, p.nq - 1u);
  let qa${r} = q_at(b, h, ic${r});
  let oa${r} = o_at(b, h, ic${r});
  let ga${r} = do_at(b, h, ic${r});
  var delta${r} = 0.0;
  for (var c = 0u; c < p.d4; c++) {
    q[${r}u * D4 + c] = ld_Q(qa${r} + 4u * c, 4u * c) * p.scale_log2;
    gr[${r}u * D4 + c] = ld_DO(ga${r} + 4u * c, 4u * c);
    dq[${r}u * D4 + c] = vec4<f32>(0.0);
    delta${r} += dot(gr[${r}u * D4 + c], ld_O(oa${r} + 4u * c, 4u * c));
  }
  let lse${r} = vec4<f32>(Lse[p.lse_off + rows + ic${r}] * ${LOG2E});
  var lim${r} = p.key_len;`)}
  var kend = p.key_len;
  if (p.causal != 0u) {
    kend = min(kend, min(row0 + WG_X * RPL, p.nq));
${each((r) => `    lim${r} = min(lim${r}, i${r} + 1u);`)}
  }
  for (var j0 = 0u; j0 < kend; j0 += BT) {
    let nj = min(BT, kend - j0);
    let r0 = j0;
${loadTile('Ks', 'K', 'k_at', 'BT', 'nj')}
${loadTile('Vs', 'V', 'v_at', 'BT', 'nj')}
    workgroupBarrier();
    for (var g = 0u; g < nj; g += 8u) {
${each((r) => `      var sa${r} = vec4<f32>(0.0);\n      var sb${r} = vec4<f32>(0.0);\n      var ta${r} = vec4<f32>(0.0);\n      var tb${r} = vec4<f32>(0.0);`)}
      for (var c = 0u; c < p.d4; c++) {
${tileRegs('Ks', 'k')}
${tileRegs('Vs', 'v')}
${each(
  (r) => `          let qr${r} = q[${r}u * D4 + c];
          let gr${r} = gr[${r}u * D4 + c];
          sa${r} += ${dots(`qr${r}`, 'k', 0)};
          sb${r} += ${dots(`qr${r}`, 'k', 4)};
          ta${r} += ${dots(`gr${r}`, 'v', 0)};
          tb${r} += ${dots(`gr${r}`, 'v', 4)};`,
)}
      }
      let ja = vec4<u32>(j0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
      let jb = ja + vec4<u32>(4u);
${each(
  (r) => `      let wa${r} = select(vec4<f32>(0.0), exp2(sa${r} - lse${r}), ja < vec4<u32>(lim${r})) * (ta${r} - vec4<f32>(delta${r}));
      let wb${r} = select(vec4<f32>(0.0), exp2(sb${r} - lse${r}), jb < vec4<u32>(lim${r})) * (tb${r} - vec4<f32>(delta${r}));`,
)}
      for (var c = 0u; c < p.d4; c++) {
${tileRegs('Ks', 'k')}
${each(
  (r) =>
    `          dq[${r}u * D4 + c] += ${range(8)
      .map((t) => `w${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * k${t}`)
      .join(' + ')};`,
)}
      }
    }
    workgroupBarrier();
  }
${each(
  (r) => `  if (i${r} < p.nq) {
    let da = dq_at(b, h, i${r});
${storeRow('DQ', 'da', 'dq', ' * p.scale', d).replace(/dq\[c\]/g, `dq[${r}u * D4 + c]`)}
    Delta[rows + i${r}] = delta${r};
  }`,
)}
}`,
  };
}

function backwardKeySpec(d: number, bq: number, br: number, rpl: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  const each = eachRow(rpl);
  const tileRegs = (tile: string, v: string) => tileRows8(tile, v);
  return {
    name: 'attention_backward_dkv',
    variant: `d${d}_bq${bq}_r${rpl}`,
    storage: [
      { name: 'Q', access: 'read', type: 'array<f32>' },
      { name: 'K', access: 'read', type: 'array<f32>' },
      { name: 'V', access: 'read', type: 'array<f32>' },
      { name: 'DO', access: 'read', type: 'array<f32>' },
      { name: 'Lse', access: 'read', type: 'array<f32>' },
      { name: 'Delta', access: 'read', type: 'array<f32>' },
      { name: 'DK', access: 'read_write', type: 'array<f32>' },
      { name: 'DV', access: 'read_write', type: 'array<f32>' },
    ],
    params: [
      ...COMMON_PARAMS,
      ['scale', 'f32'],
      ...OPERAND_PARAMS('q'),
      ...OPERAND_PARAMS('k'),
      ...OPERAND_PARAMS('v'),
      ...OPERAND_PARAMS('do'),
      ...OPERAND_PARAMS('dk'),
      ...OPERAND_PARAMS('dv'),
      ['lse_off', 'u32'],
    ],
    workgroupSize: [br],
    code: `
${headerConsts(d, bq)}
const RPL: u32 = ${rpl}u;
var<workgroup> Qs: array<vec4<f32>, ${bq * d4}>;
var<workgroup> Gs: array<vec4<f32>, ${bq * d4}>;
var<workgroup> Ls: array<f32, ${bq}>;
var<workgroup> Ds: array<f32, ${bq}>;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('do')}
${rowFn('dk')}
${rowFn('dv')}
${loader('Q', d)}
${loader('K', d)}
${loader('V', d)}
${loader('DO', d)}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  // Each invocation owns RPL keys, WG_X apart: the query tile's loads are shared by all.
  let col0 = wid.x * WG_X * RPL;
  var k: array<vec4<f32>, ${rpl * d4}>;
  var v: array<vec4<f32>, ${rpl * d4}>;
  var dk: array<vec4<f32>, ${rpl * d4}>;
  var dv: array<vec4<f32>, ${rpl * d4}>;
${each((r) => `  let j${r} = col0 + ${r}u * WG_X + lid.x;
  let ka${r} = k_at(b, h, min(j${r}, p.nk - 1u));
  let va${r} = v_at(b, h, min(j${r}, p.nk - 1u));
  for (var c = 0u; c < p.d4; c++) {
    k[${r}u * D4 + c] = ld_K(ka${r} + 4u * c, 4u * c);
    v[${r}u * D4 + c] = ld_V(va${r} + 4u * c, 4u * c);
    dk[${r}u * D4 + c] = vec4<f32>(0.0);
    dv[${r}u * D4 + c] = vec4<f32>(0.0);
  }
  let live${r} = vec4<bool>(j${r} < p.key_len);`)}
  let rows = (b * p.heads + h) * p.nq;
  // Keys past key_len get no gradient; with the causal mask, query rows before the block's
  // first key see none of it.
  var i0 = 0u;
  if (p.causal != 0u) { i0 = col0; }
  var iend = p.nq;
  if (col0 >= p.key_len) { iend = 0u; }
  for (var t0 = i0; t0 < iend; t0 += BT) {
    let ni = min(BT, iend - t0);
    let r0 = t0;
${loadTile('Qs', 'Q', 'q_at', 'BT', 'ni', ' * p.scale_log2')}
${loadTile('Gs', 'DO', 'do_at', 'BT', 'ni')}
    for (var ii = lid.x; ii < BT; ii += WG_X) {
      var lv = 0.0;
      var dl = 0.0;
      if (ii < ni) {
        lv = Lse[p.lse_off + rows + t0 + ii] * ${LOG2E};
        dl = Delta[rows + t0 + ii];
      }
      Ls[ii] = lv;
      Ds[ii] = dl;
    }
    workgroupBarrier();
    for (var g = 0u; g < ni; g += 8u) {
${each((r) => `      var sa${r} = vec4<f32>(0.0);\n      var sb${r} = vec4<f32>(0.0);\n      var ta${r} = vec4<f32>(0.0);\n      var tb${r} = vec4<f32>(0.0);`)}
      for (var c = 0u; c < p.d4; c++) {
${tileRegs('Qs', 'x')}
${tileRegs('Gs', 'y')}
${each(
  (r) => `          let kr${r} = k[${r}u * D4 + c];
          let vr${r} = v[${r}u * D4 + c];
          sa${r} += ${dots(`kr${r}`, 'x', 0)};
          sb${r} += ${dots(`kr${r}`, 'x', 4)};
          ta${r} += ${dots(`vr${r}`, 'y', 0)};
          tb${r} += ${dots(`vr${r}`, 'y', 4)};`,
)}
      }
      let ia = vec4<u32>(t0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
      let ib = ia + vec4<u32>(4u);
      let la = vec4<f32>(Ls[g], Ls[g + 1u], Ls[g + 2u], Ls[g + 3u]);
      let lb = vec4<f32>(Ls[g + 4u], Ls[g + 5u], Ls[g + 6u], Ls[g + 7u]);
      let da = vec4<f32>(Ds[g], Ds[g + 1u], Ds[g + 2u], Ds[g + 3u]);
      let db = vec4<f32>(Ds[g + 4u], Ds[g + 5u], Ds[g + 6u], Ds[g + 7u]);
${each(
  (r) => `      // Row i sees key j when i < iend (tile tail), j < key_len and, causally, j ≤ i.
      var oka${r} = (ia < vec4<u32>(iend)) & live${r};
      var okb${r} = (ib < vec4<u32>(iend)) & live${r};
      if (p.causal != 0u) {
        oka${r} = oka${r} & (vec4<u32>(j${r}) <= ia);
        okb${r} = okb${r} & (vec4<u32>(j${r}) <= ib);
      }
      let pa${r} = select(vec4<f32>(0.0), exp2(sa${r} - la), oka${r});
      let pb${r} = select(vec4<f32>(0.0), exp2(sb${r} - lb), okb${r});
      let wa${r} = pa${r} * (ta${r} - da);
      let wb${r} = pb${r} * (tb${r} - db);`,
)}
      for (var c = 0u; c < p.d4; c++) {
${tileRegs('Qs', 'x')}
${tileRegs('Gs', 'y')}
${each(
  (r) => `          dv[${r}u * D4 + c] += ${range(8)
    .map((t) => `p${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * y${t}`)
    .join(' + ')};
          dk[${r}u * D4 + c] += ${range(8)
            .map((t) => `w${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * x${t}`)
            .join(' + ')};`,
)}
      }
    }
    workgroupBarrier();
  }
${each(
  (r) => `  if (j${r} < p.nk) {
    let kd = dk_at(b, h, j${r});
    let vd = dv_at(b, h, j${r});
    // dk accumulated ds·(scale·log2e·q): scale/(scale·log2e) = ln 2 restores scale·ds·q.
${storeRow('DK', 'kd', 'dk', ` * ${Math.LN2}`, d).replace(/dk\[c\]/g, `dk[${r}u * D4 + c]`)}
${storeRow('DV', 'vd', 'dv', '', d).replace(/dv\[c\]/g, `dv[${r}u * D4 + c]`)}
  }`,
)}
}`,
  };
}

// ---- Subgroup kernels (CPU adapters with a fixed subgroup of 8) ----
//
// Shaped like the 'subgroup' matmul: a workgroup is one subgroup, each lane owns SG_ROWS rows and
// walks the other operand in tiles of SG_TILE rows straight from storage. For each 4-wide chunk
// of the head dimension every lane loads a vec4 of SG_TILE / 8 tile rows and subgroupBroadcast
// hands them to the other lanes: a tile element costs one gather for all 8 lanes and feeds
// SG_ROWS dot products (or multiply-adds) per lane. No workgroup memory. On lavapipe at
// ViT-B/16@448 (process CPU time, other jobs sharing the cores, so ±10%):
// - operands bound as vec4 arrays, one load per chunk: forward 1.1×, backward 1.3× faster than
//   four scalar loads (and than masking a ragged last chunk, hence d % 4 = 0);
// - the per-row accumulators (o, dk, dv, dq) are read and written once per tile and chunk, so the
//   loops that update them take 32 tile rows; the score loops take them in slices of 16
//   (SG_ROWS × 16 running sums): the forward runs 1.2× faster than with 16-row tiles or with one
//   32-row score loop;
// - a store whose address differs per lane is scalarised, the dearest access of all: adding dQ
//   to storage after every 32-key block took a fifth of the backward; once per SG_BLOCKS blocks
//   the backward runs 1.15× faster;
// - one backward kernel (dQ from the dS that the dK/dV pass computes anyway) instead of a second
//   pass over query rows that recomputes P and dP: 1.15×.
/** Rows a lane owns (queries in the forward, keys in the backward): 8 lanes cover 32. */
const SG_ROWS = 4;
/** Rows of the other operand per step: 8 groups of 4, one per lane in the backward's dQ hand-over. */
const SG_TILE = 32;
/** Score loops run over the tile in slices of this many rows. */
const SG_SLICE = 16;
/** Blocks of 32 keys per backward step: dQ of a query tile is added to storage once per step. */
const SG_BLOCKS = 4;

/**
 * Widest head dim of the subgroup kernels, the vec4 capacity of a row's private accumulators
 * times 4: one pipeline per kernel (the loops run to p.d4), since lavapipe takes up to 20 s to
 * compile the backward. ViT-B and CLIP heads are 64 wide; wider ones take the portable kernels.
 */
const SG_MAX_HEAD_DIM = 64;
const SG_D4 = SG_MAX_HEAD_DIM / 4;

/** WGSL: `fn ld_<B>(a: u32) -> vec4<f32>`, the vec4 at element a (a multiple of 4) of a vec4 binding. */
function sgLoader(buffer: string): string {
  return `fn ld_${buffer}(a: u32) -> vec4<f32> { return ${buffer}[a >> 2u]; }`;
}

/** WGSL: `buffer[at + 4c ..] op value` over the row's chunks c, `value` a vec4 expression of c. */
function sgStoreRow(buffer: string, at: string, value: string, op = '='): string {
  return `for (var c = 0u; c < p.d4; c++) { let v = ${value}; ${range(4).map((t) => `${buffer}[${at} + 4u * c + ${t}u] ${op} v[${t}];`).join(' ')} }`;
}

/** WGSL: `let <v>0..` = chunk c of tile rows first..first+n-1, from the row addresses `<v>a<l>` (row 8l + lane). */
function sgTile(buffer: string, v: string, n: number, first = 0): string {
  const loads = range(n / 8).map((l) => `        let ${v}l${l + first / 8} = ld_${buffer}(${v}a${l + first / 8} + 4u * c);`);
  const casts = range(n).map((t) => `        let ${v}${t + first} = subgroupBroadcast(${v}l${(t + first) >> 3}, ${(t + first) & 7}u);`);
  return [...loads, ...casts].join('\n');
}

/** WGSL: acc<r>_<g> (vec4 over tile rows 4g..4g+3) += own row chunk x<r> · tile rows t<4g>..t<4g+3>, for tile rows first..first+n-1. */
function sgScores(acc: string, x: string, t: string, n: number, first: number): string {
  const L: string[] = [];
  const groups = range(n / 4).map((g) => g + first / 4);
  // The tile chunks transposed: column e of four rows (vec4 components are separate registers on
  // a CPU adapter, so this costs nothing).
  for (const g of groups) for (const e of 'xyzw') L.push(`        let ${t}t${e}${g} = vec4<f32>(${range(4).map((u) => `${t}${4 * g + u}.${e}`).join(', ')});`);
  for (const r of range(SG_ROWS)) for (const g of groups) for (const e of 'xyzw') L.push(`        ${acc}${r}_${g} += ${x}${r}.${e} * ${t}t${e}${g};`);
  return L.join('\n');
}

/** WGSL: `<arr>[(<base> + r)·D4 + c] = that · f<r> + Σ_t w<r>_<t/4>[t%4] · t<t>` over the lane's rows and the tile. */
function sgAccumulate(arr: string, w: string, t: string, base = '', factor?: string): string {
  return range(SG_ROWS)
    .map((r) => {
      const at = `${arr}[(${base}${r}u) * D4 + c]`;
      const terms = range(SG_TILE).map((u) => `${w}${r}_${u >> 2}.${'xyzw'[u & 3]} * ${t}${u}`);
      return `        ${at} = ${at}${factor ? ` * ${factor}${r}` : ''} + ${terms.join(' + ')};`;
    })
    .join('\n');
}

/** Forward: lane owns SG_ROWS queries; online softmax over key tiles of SG_TILE. */
function forwardSubgroupSpec(): KernelSpec {
  const each = eachRow(SG_ROWS);
  const groups = range(SG_TILE / 4);
  const vec = (f: (g: number) => string) => groups.map(f).join('\n');
  return {
    name: 'attention_forward_sg',
    storage: [
      { name: 'Q', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'K', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'V', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'O', access: 'read_write', type: 'array<f32>' },
      { name: 'Lse', access: 'read_write', type: 'array<f32>' },
    ],
    params: [...COMMON_PARAMS, ...OPERAND_PARAMS('q'), ...OPERAND_PARAMS('k'), ...OPERAND_PARAMS('v'), ...OPERAND_PARAMS('o'), ['lse_off', 'u32']],
    workgroupSize: [8],
    enable: ['subgroups'],
    code: `
const D4: u32 = ${SG_D4}u;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('o')}
${sgLoader('Q')}
${sgLoader('K')}
${sgLoader('V')}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let row0 = wid.x * ${8 * SG_ROWS}u;
  var o: array<vec4<f32>, ${SG_ROWS * SG_D4}>;
  for (var r = 0u; r < ${SG_ROWS}u; r++) { for (var c = 0u; c < p.d4; c++) { o[r * D4 + c] = vec4<f32>(0.0); } }
${each((r) => `  let i${r} = row0 + lane * ${SG_ROWS}u + ${r}u;
  let qa${r} = q_at(b, h, min(i${r}, p.nq - 1u));
  var m${r} = ${MASKED};
  var l${r} = 0.0;
  var lim${r} = p.key_len;`)}
  // Keys row i may see: j < lim_i. The subgroup's loop bound is the largest lim of its rows.
  var kend = p.key_len;
  if (p.causal != 0u) {
    kend = min(kend, min(row0 + ${8 * SG_ROWS}u, p.nq));
${each((r) => `    lim${r} = min(lim${r}, i${r} + 1u);`)}
  }
  for (var j0 = 0u; j0 < kend; j0 += ${SG_TILE}u) {
${range(SG_TILE / 8)
  .map((l) => `    let ka${l} = k_at(b, h, min(j0 + ${8 * l}u + lane, p.nk - 1u));\n    let va${l} = v_at(b, h, min(j0 + ${8 * l}u + lane, p.nk - 1u));`)
  .join('\n')}
${each((r) => vec((g) => `    var s${r}_${g} = vec4<f32>(0.0);`))}
${range(SG_TILE / SG_SLICE)
  .map(
    (sl) => `    for (var c = 0u; c < p.d4; c++) {
${sgTile('K', 'k', SG_SLICE, sl * SG_SLICE)}
${each((r) => `        let q${r} = ld_Q(qa${r} + 4u * c);`)}
${sgScores('s', 'q', 'k', SG_SLICE, sl * SG_SLICE)}
    }`,
  )
  .join('\n')}
${each(
  (r) => `${vec((g) => `    let ms${r}_${g} = select(vec4<f32>(${MASKED}), s${r}_${g} * p.scale_log2, vec4<u32>(j0 + ${4 * g}u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(lim${r}));`)}
    let mx${r} = ${groups.map((g) => `ms${r}_${g}`).reduce((a, b) => `max(${a}, ${b})`)};
    let mt${r} = max(m${r}, max(max(mx${r}.x, mx${r}.y), max(mx${r}.z, mx${r}.w)));
    let alpha${r} = exp2(m${r} - mt${r});
${vec((g) => `    let w${r}_${g} = exp2(ms${r}_${g} - vec4<f32>(mt${r}));`)}
    l${r} = l${r} * alpha${r} + dot(${groups.map((g) => `w${r}_${g}`).join(' + ')}, vec4<f32>(1.0));
    m${r} = mt${r};`,
)}
    for (var c = 0u; c < p.d4; c++) {
${sgTile('V', 'v', SG_TILE)}
${sgAccumulate('o', 'w', 'v', '', 'alpha')}
    }
  }
${each(
  (r) => `  if (i${r} < p.nq) {
    let oa = o_at(b, h, i${r});
    let inv = 1.0 / l${r};
    ${sgStoreRow('O', 'oa', `o[${r}u * D4 + c] * inv`)}
    Lse[p.lse_off + (b * p.heads + h) * p.nq + i${r}] = (m${r} + log2(l${r})) * ${Math.LN2};
  }`,
)}
}`,
  };
}

/**
 * Backward in one kernel, one workgroup per head: dQ then has a single writer and needs no
 * atomics (the price: B·H workgroups, which keeps a CPU adapter's threads busy from one ViT image
 * up, not hundreds of GPU cores). After D = rowsum(dO ⊙ O) and dQ = 0, it walks key blocks of
 * SG_BLOCKS × 32 keys (lane: SG_ROWS keys of each 32) and, per block, query tiles of 32: it
 * recomputes Pᵀ and dPᵀ for the lane's keys, adds into dV and dK (private, stored once per
 * block), and hands dS over the lanes so that each lane adds dS·K of the block into its 4
 * queries' dQ rows in storage.
 */
function backwardSubgroupSpec(shared = false): KernelSpec {
  // With \`shared\`, dQ, dK and dV are views of one buffer bound once as DQ (writable bindings may not alias).
  const [DQ, DK, DV] = shared ? ['DQ', 'DQ', 'DQ'] : ['DQ', 'DK', 'DV'];
  const each = eachRow(SG_ROWS);
  const groups = range(SG_TILE / 4);
  const vec = (f: (g: number) => string) => groups.map(f).join('\n');
  const bcastVec = (src: string, g: number) => `vec4<f32>(${range(4).map((u) => `subgroupBroadcast(${src}${(4 * g + u) >> 3}, ${(4 * g + u) & 7}u)`).join(', ')})`;
  const keyRows = (first: string) =>
    each((r) => `      let j${r} = ${first} + lane * ${SG_ROWS}u + ${r}u;
      let ka${r} = k_at(b, h, min(j${r}, p.nk - 1u));`);
  return {
    name: 'attention_backward_sg',
    variant: shared ? 'shared' : '',
    storage: [
      { name: 'Q', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'K', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'V', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'O', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'DO', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'Lse', access: 'read', type: 'array<f32>' },
      { name: 'Delta', access: 'read_write', type: 'array<f32>' },
      { name: 'DQ', access: 'read_write', type: 'array<f32>' },
      ...(shared
        ? []
        : [
            { name: 'DK', access: 'read_write' as const, type: 'array<f32>' },
            { name: 'DV', access: 'read_write' as const, type: 'array<f32>' },
          ]),
    ],
    params: [
      ...COMMON_PARAMS,
      ['scale', 'f32'],
      ...OPERAND_PARAMS('q'),
      ...OPERAND_PARAMS('k'),
      ...OPERAND_PARAMS('v'),
      ...OPERAND_PARAMS('o'),
      ...OPERAND_PARAMS('do'),
      ...OPERAND_PARAMS('dq'),
      ...OPERAND_PARAMS('dk'),
      ...OPERAND_PARAMS('dv'),
      ['lse_off', 'u32'],
    ],
    workgroupSize: [8],
    enable: ['subgroups'],
    code: `
const D4: u32 = ${SG_D4}u;
const KB: u32 = ${SG_BLOCKS}u;
${['q', 'k', 'v', 'o', 'do', 'dq', 'dk', 'dv'].map(rowFn).join('\n')}
${['Q', 'K', 'V', 'O', 'DO'].map(sgLoader).join('\n')}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let rows = wid.y * p.nq;
  for (var i = lane; i < p.nq; i += 8u) {
    let oa = o_at(b, h, i);
    let ga = do_at(b, h, i);
    var dl = 0.0;
    for (var c = 0u; c < p.d4; c++) { dl += dot(ld_DO(ga + 4u * c), ld_O(oa + 4u * c)); }
    Delta[rows + i] = dl;
    let qd = dq_at(b, h, i);
    ${sgStoreRow(DQ, 'qd', 'vec4<f32>(0.0)')}
  }
  storageBarrier();
  // Per lane: dk, dv of its keys in each 32-key block; dS of the tile (wp: own keys, es: the
  // lane's 4 queries against every key); dQ of its queries over the step's blocks.
  var dk: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * SG_D4}>;
  var dv: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * SG_D4}>;
  var wp: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * 8}>;
  var es: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * 8}>;
  var dqp: array<vec4<f32>, ${4 * SG_D4}>;
  for (var col0 = 0u; col0 < p.nk; col0 += KB * 32u) {
    // Only the head's d4 chunks of each row: the arrays are sized for the widest head.
    for (var r = 0u; r < KB * ${SG_ROWS}u; r++) { for (var c = 0u; c < p.d4; c++) { dk[r * D4 + c] = vec4<f32>(0.0); dv[r * D4 + c] = vec4<f32>(0.0); } }
    // Keys past key_len get no gradient; with the causal mask, query rows before the block's
    // first key see none of it.
    let kb_end = min(KB, (max(p.key_len, col0) - col0 + 31u) / 32u);
    var i0 = 0u;
    if (p.causal != 0u) { i0 = col0; }
    var iend = p.nq;
    if (col0 >= p.key_len) { iend = 0u; }
    for (var t0 = i0; t0 < iend; t0 += ${SG_TILE}u) {
${range(SG_TILE / 8)
  .map(
    (l) => `      let il${l} = min(t0 + ${8 * l}u + lane, p.nq - 1u);
      let xa${l} = q_at(b, h, il${l});
      let ya${l} = do_at(b, h, il${l});
      let ll${l} = Lse[p.lse_off + rows + il${l}] * ${LOG2E};
      let dl${l} = Delta[rows + il${l}];`,
  )
  .join('\n')}
${vec((g) => `      let la${g} = ${bcastVec('ll', g)};\n      let da${g} = ${bcastVec('dl', g)};\n      let ia${g} = vec4<u32>(t0 + ${4 * g}u) + vec4<u32>(0u, 1u, 2u, 3u);`)}
      for (var kb = 0u; kb < kb_end; kb++) {
${keyRows('col0 + 32u * kb')}
${each((r) => `      let va${r} = v_at(b, h, min(j${r}, p.nk - 1u));\n      let live${r} = vec4<bool>(j${r} < p.key_len);`)}
${each((r) => vec((g) => `      var s${r}_${g} = vec4<f32>(0.0);\n      var t${r}_${g} = vec4<f32>(0.0);`))}
${range(SG_TILE / SG_SLICE)
  .map(
    (sl) => `      for (var c = 0u; c < p.d4; c++) {
${sgTile('Q', 'x', SG_SLICE, sl * SG_SLICE)}
${each((r) => `        let kr${r} = ld_K(ka${r} + 4u * c);`)}
${sgScores('s', 'kr', 'x', SG_SLICE, sl * SG_SLICE)}
      }
      for (var c = 0u; c < p.d4; c++) {
${sgTile('DO', 'y', SG_SLICE, sl * SG_SLICE)}
${each((r) => `        let vr${r} = ld_V(va${r} + 4u * c);`)}
${sgScores('t', 'vr', 'y', SG_SLICE, sl * SG_SLICE)}
      }`,
  )
  .join('\n')}
${each((r) =>
  vec(
    (g) => `      var ok${r}_${g} = (ia${g} < vec4<u32>(iend)) & live${r};
      if (p.causal != 0u) { ok${r}_${g} = ok${r}_${g} & (vec4<u32>(j${r}) <= ia${g}); }
      let p${r}_${g} = select(vec4<f32>(0.0), exp2(s${r}_${g} * p.scale_log2 - la${g}), ok${r}_${g});
      let w${r}_${g} = p${r}_${g} * (t${r}_${g} - da${g});
      wp[(kb * ${SG_ROWS}u + ${r}u) * 8u + ${g}u] = w${r}_${g} * p.scale;`,
  ),
)}
      for (var c = 0u; c < p.d4; c++) {
${sgTile('DO', 'y', SG_TILE)}
${sgAccumulate('dv', 'p', 'y', `kb * ${SG_ROWS}u + `)}
      }
      for (var c = 0u; c < p.d4; c++) {
${sgTile('Q', 'x', SG_TILE)}
${sgAccumulate('dk', 'w', 'x', `kb * ${SG_ROWS}u + `)}
      }
      }
      // dQ: lane m takes the tile's queries t0 + 4m .. + 3 (group m of every lane's dS). Turn u
      // of the rotation hands lane m the dS of lane m - u by subgroupShuffle; es files it by
      // source lane, so that the K rows can then go to all lanes by subgroupBroadcast.
      for (var kb = 0u; kb < kb_end; kb++) {
        for (var u = 0u; u < 8u; u++) {
          let src = (lane - u) & 7u;
${each((r) => `          es[(kb * 8u + src) * ${SG_ROWS}u + ${r}u] = subgroupShuffle(wp[(kb * ${SG_ROWS}u + ${r}u) * 8u + ((lane + u) & 7u)], src);`)}
        }
      }
      for (var r = 0u; r < 4u; r++) { for (var c = 0u; c < p.d4; c++) { dqp[r * D4 + c] = vec4<f32>(0.0); } }
      for (var kb = 0u; kb < kb_end; kb++) {
${keyRows('col0 + 32u * kb')}
${range(8)
  .map((l) => each((r) => `      let e${l}_${r} = es[(kb * 8u + ${l}u) * ${SG_ROWS}u + ${r}u];`))
  .join('\n')}
      for (var c = 0u; c < p.d4; c++) {
${each((r) => `        let kr${r} = ld_K(ka${r} + 4u * c);`)}
${range(8)
  .map((l) => each((r) => `        let kk${l}_${r} = subgroupBroadcast(kr${r}, ${l}u);`))
  .join('\n')}
${range(4)
  .map((qi) => `        dqp[${qi}u * D4 + c] += ${range(8)
    .flatMap((l) => range(SG_ROWS).map((r) => `e${l}_${r}.${'xyzw'[qi]} * kk${l}_${r}`))
    .join(' + ')};`)
  .join('\n')}
      }
      }
      let tq = t0 + 4u * lane;
${range(4)
  .map(
    (qi) => `      if (tq + ${qi}u < iend) {
        let qd = dq_at(b, h, tq + ${qi}u);
        ${sgStoreRow(DQ, 'qd', `dqp[${qi}u * D4 + c]`, '+=')}
      }`,
  )
  .join('\n')}
    }
    for (var kb = 0u; kb < KB; kb++) {
${keyRows('col0 + 32u * kb')}
${each(
  (r) => `      if (j${r} < p.nk) {
        let kd = dk_at(b, h, j${r});
        let vd = dv_at(b, h, j${r});
        ${sgStoreRow(DK, 'kd', `dk[(kb * ${SG_ROWS}u + ${r}u) * D4 + c] * p.scale`)}
        ${sgStoreRow(DV, 'vd', `dv[(kb * ${SG_ROWS}u + ${r}u) * D4 + c]`)}
      }`,
)}
    }
  }
}`,
  };
}

export interface AttentionForward {
  /** (B, H, Nq, d), stored as (B, Nq, H, d). */
  out: Tensor;
  /** (B, H, Nq): natural log-sum-exp of each query row's scaled, masked scores. */
  lse: Tensor;
}

/** softmax(scale·Q·Kᵀ, masked)·V in one kernel; returns the output and the per-row log-sum-exp. */
export function launchAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): AttentionForward {
  const r = resolve('attention', q, k, v, opts);
  const family = attentionKernel(q, k, opts);
  const sg = family !== 'portable';
  const Q = operand('attention', 'q', q, sg);
  const K = operand('attention', 'k', k, sg);
  const V = operand('attention', 'v', v, sg);
  const out = headsLast(q, r.Nq, 'attention');
  const lse = empty(q.device, [r.B, r.H, r.Nq], 'f32', 'attention_lse');
  const common = [Math.ceil(r.d / 4), r.H, r.Nq, r.Nk, r.keyLength, r.causal ? 1 : 0, r.scale * LOG2E];
  const operands = [...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(out), lse.offset];
  const buffers = [Q.t.buffer, K.t.buffer, V.t.buffer, out.buffer, lse.buffer];
  if (family === 'lanes') {
    q.device.dispatch(laneForwardSpec(r.Nk), buffers, [...common, ...operands], [Math.ceil(r.Nq / 8), r.B * r.H, 1]);
  } else if (family === 'subgroup') {
    q.device.dispatch(forwardSubgroupSpec(), buffers, [...common, ...operands], [Math.ceil(r.Nq / (8 * SG_ROWS)), r.B * r.H, 1]);
  } else {
    const br = blockLanes(r.Nq);
    q.device.dispatch(forwardSpec(r.d, tileRows(r.d), br, ROWS_PER_LANE), buffers, [...common, ...operands], [Math.ceil(r.Nq / (br * ROWS_PER_LANE)), r.B * r.H, 1]);
  }
  release(Q, K, V);
  return { out, lse };
}

export interface AttentionGrads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

/**
 * dQ, dK, dV of attention given dO, from the forward's inputs, output and LSE (no stored
 * probabilities). Each gradient is (B, H, N, d) stored as (B, N, H, d), or written into `into`'s
 * views (which it returns).
 */
export function launchAttentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  dOut: Tensor,
  opts: AttentionOptions = {},
  into?: AttentionGrads,
): AttentionGrads {
  const r = resolve('attention backward', q, k, v, opts);
  const shapes = `q ${shapeStr(q.shape)}, out ${shapeStr(out.shape)}, dOut ${shapeStr(dOut.shape)}, lse ${shapeStr(lse.shape)}`;
  if (out.shape.join() !== q.shape.join() || dOut.shape.join() !== q.shape.join()) {
    throw new Error(`attention backward: out and dOut must have q's shape (B, H, Nq, d); got ${shapes}`);
  }
  if (lse.shape.join() !== [r.B, r.H, r.Nq].join() || !lse.isContiguous() || lse.dtype !== 'f32') {
    throw new Error(`attention backward: lse must be a contiguous f32 (B, H, Nq); got ${shapes}`);
  }
  const family = attentionKernel(q, k, opts);
  const sg = family !== 'portable';
  const Q = operand('attention backward', 'q', q, sg);
  const K = operand('attention backward', 'k', k, sg);
  const V = operand('attention backward', 'v', v, sg);
  const O = operand('attention backward', 'out', out, sg);
  const G = operand('attention backward', 'dOut', dOut, sg);
  // The gradients go where the caller asks (views of one dqkv projection gradient, say) or to new
  // heads-last tensors; a view the kernels cannot write (strided head dim, unaligned for vec4) is refused.
  if (into) {
    for (const [name, t, like] of [['dq', into.dq, q], ['dk', into.dk, k], ['dv', into.dv, v]] as const) {
      const aligned = !sg || [t.offset, ...t.strides.slice(0, 3)].every((x) => x % 4 === 0);
      if (t.shape.join() !== like.shape.join() || t.strides[3] !== 1 || t.dtype !== 'f32' || !aligned) {
        throw new Error(`attention backward: ${name} destination ${shapeStr(t.shape)} strides [${t.strides.join(', ')}] offset ${t.offset} cannot take the ${family} kernels' output for ${shapeStr(like.shape)}`);
      }
    }
  }
  // One buffer behind all three: bound once (the portable kernels, which bind them apart, write
  // to new tensors that are then copied into place).
  const shared = into !== undefined && into.dq.storage === into.dk.storage && into.dk.storage === into.dv.storage;
  const direct = into !== undefined && (!shared || family !== 'portable');
  const dq = direct ? into.dq : headsLast(q, r.Nq, 'attention_dq');
  const dk = direct ? into.dk : headsLast(k, r.Nk, 'attention_dk');
  const dv = direct ? into.dv : headsLast(v, r.Nk, 'attention_dv');
  const delta = empty(q.device, [r.B, r.H, r.Nq], 'f32', 'attention_delta');
  const common = [Math.ceil(r.d / 4), r.H, r.Nq, r.Nk, r.keyLength, r.causal ? 1 : 0, r.scale * LOG2E];
  if (family === 'lanes') {
    const params = [...common, r.scale, ...[Q, K, V, O, G].flatMap((x) => layout(x.t)), ...layout(dq), ...layout(dk), ...layout(dv), lse.offset];
    const inputs = [Q.t.buffer, K.t.buffer, V.t.buffer, O.t.buffer, G.t.buffer, lse.buffer];
    q.device.dispatch(laneBackwardQuerySpec(), [...inputs, delta.buffer, dq.buffer], params, [Math.ceil(r.Nq / 8), r.B * r.H, 1]);
    q.device.dispatch(laneBackwardKeySpec(shared), [...inputs, delta.buffer, dk.buffer, ...(shared ? [] : [dv.buffer])], params, [Math.ceil(r.Nk / 8), r.B * r.H, 1]);
  } else if (family === 'subgroup') {
    q.device.dispatch(
      backwardSubgroupSpec(shared),
      [Q.t.buffer, K.t.buffer, V.t.buffer, O.t.buffer, G.t.buffer, lse.buffer, delta.buffer, dq.buffer, ...(shared ? [] : [dk.buffer, dv.buffer])],
      [...common, r.scale, ...[Q, K, V, O, G].flatMap((x) => layout(x.t)), ...layout(dq), ...layout(dk), ...layout(dv), lse.offset],
      [1, r.B * r.H, 1],
    );
  } else {
    const brq = blockLanes(r.Nq);
    q.device.dispatch(
      backwardQuerySpec(r.d, tileRows(r.d), brq, ROWS_PER_LANE),
      [Q.t.buffer, K.t.buffer, V.t.buffer, O.t.buffer, G.t.buffer, lse.buffer, dq.buffer, delta.buffer],
      [...common, r.scale, ...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(O.t), ...layout(G.t), ...layout(dq), lse.offset],
      [Math.ceil(r.Nq / (brq * ROWS_PER_LANE)), r.B * r.H, 1],
    );
    const brk = blockLanes(r.Nk);
    q.device.dispatch(
      backwardKeySpec(r.d, tileRows(r.d), brk, ROWS_PER_LANE),
      [Q.t.buffer, K.t.buffer, V.t.buffer, G.t.buffer, lse.buffer, delta.buffer, dk.buffer, dv.buffer],
      [...common, r.scale, ...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(G.t), ...layout(dk), ...layout(dv), lse.offset],
      [Math.ceil(r.Nk / (brk * ROWS_PER_LANE)), r.B * r.H, 1],
    );
  }
  delta.dispose();
  release(Q, K, V, O, G);
  if (into && !direct) {
    for (const [dst, src] of [[into.dq, dq], [into.dk, dk], [into.dv, dv]] as const) {
      launchAssign(dst, src);
      src.dispose();
    }
  }
  return into ?? { dq, dk, dv };
}

const CLS_WG = 64;

function clsScoresSpec(d: number): KernelSpec {
  return {
    name: 'attention_cls_scores',
    variant: `d${d}`,
    storage: [
      { name: 'Q', access: 'read', type: 'array<f32>' },
      { name: 'K', access: 'read', type: 'array<f32>' },
      { name: 'Lse', access: 'read', type: 'array<f32>' },
      { name: 'Out', access: 'read_write', type: 'array<f32>' },
    ],
    params: [['heads', 'u32'], ['nq', 'u32'], ['npatch', 'u32'], ['scale_log2', 'f32'], ['lse_off', 'u32'], ...OPERAND_PARAMS('q'), ...OPERAND_PARAMS('k')],
    workgroupSize: [CLS_WG],
    code: `
const D: u32 = ${d}u;
${rowFn('q')}
${rowFn('k')}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y;
  let j = wid.x * WG_X + lid.x;
  if (j >= p.npatch) { return; }
  var total = 0.0;
  for (var h = 0u; h < p.heads; h++) {
    let qa = q_at(b, h, 0u);
    let ka = k_at(b, h, j + 1u);
    var s = 0.0;
    for (var c = 0u; c < D; c++) { s += Q[qa + c] * K[ka + c]; }
    total += exp2(s * p.scale_log2 - Lse[p.lse_off + (b * p.heads + h) * p.nq] * ${LOG2E});
  }
  Out[b * p.npatch + j] = total;
}`,
  };
}

/**
 * SsVP scores (B, Nk − 1): the CLS query's attention probability over each patch key (token
 * j + 1 for patch j), summed over heads, from the forward's saved LSE. `scale` must be the
 * forward's; no gradient.
 */
export function launchClsAttentionScores(q: Tensor, k: Tensor, lse: Tensor, opts: { scale?: number } = {}): Tensor {
  const shapes = `q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, lse ${shapeStr(lse.shape)}`;
  if (q.rank !== 4 || k.rank !== 4 || q.shape[0] !== k.shape[0] || q.shape[1] !== k.shape[1] || q.shape[3] !== k.shape[3]) {
    throw new Error(`clsAttentionScores: q (B, H, Nq, d) and k (B, H, Nk, d) do not match; got ${shapes}`);
  }
  const [B, H, Nq, d] = q.shape as [number, number, number, number];
  const Nk = k.shape[2]!;
  if (Nk < 2) throw new Error(`clsAttentionScores: needs a CLS key and at least one patch key; got ${shapes}`);
  if (lse.shape.join() !== [B, H, Nq].join() || !lse.isContiguous() || lse.dtype !== 'f32') {
    throw new Error(`clsAttentionScores: lse must be a contiguous f32 (B, H, Nq); got ${shapes}`);
  }
  if (d > MAX_HEAD_DIM || B > 65535) throw new Error(`clsAttentionScores: unsupported shapes ${shapes}`);
  const Q = operand('clsAttentionScores', 'q', q, false);
  const K = operand('clsAttentionScores', 'k', k, false);
  const out = empty(q.device, [B, Nk - 1], 'f32', 'cls_scores');
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  q.device.dispatch(
    clsScoresSpec(d),
    [Q.t.buffer, K.t.buffer, lse.buffer, out.buffer],
    [H, Nq, Nk - 1, scale * LOG2E, lse.offset, ...layout(Q.t), ...layout(K.t)],
    [Math.ceil((Nk - 1) / CLS_WG), B, 1],
  );
  release(Q, K);
  return out;
}
