// Fused multi-head attention, FlashAttention-2 style: the forward streams key/value tiles through
// workgroup memory with an online softmax, so the N×N scores never reach global memory, and saves
// only the per-row log-sum-exp. The backward recomputes the probabilities from Q, K and that LSE,
// in two passes because WGSL has no float atomics: one over query rows (dQ, and D = rowsum(dO ⊙ O)),
// one over key rows (dK, dV). Every pass runs one invocation per row: on a SIMD CPU adapter the
// lanes then vectorise the head dimension's loops with no cross-lane reduction, and on a GPU the
// tile in workgroup memory is read by all rows of the block.
//
// Layout: q, k, v, dO are (B, H, N, d) views with any strides over B, H, N and a unit stride over
// d, so q, k and v can be views of one (B, N, 3, H, d) projection without copies. Outputs (O, dQ,
// dK, dV) are stored as (B, N, H, d) and returned as (B, H, N, d) views of that storage: permuting
// them back to (B, N, H, d) gives a contiguous tensor, so merging heads is a free reshape.
import type { KernelSpec } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { launchCopy } from './elementwise.js';

export interface AttentionOptions {
  /** Query i attends only to keys j ≤ i (CLIP's text transformer). Needs Nq = Nk. */
  causal?: boolean;
  /** Keys j ≥ keyLength are masked (padding). Default Nk. */
  keyLength?: number;
  /** Score scale. Default 1/√d. */
  scale?: number;
}

/** Widest head dimension: the per-row registers (q, o, dq...) and the tiles must fit. */
export const MAX_HEAD_DIM = 256;

const LOG2E = Math.LOG2E;

/** A (B, H, N, d) operand: storage offset and strides of its first three dims. */
interface Operand {
  t: Tensor;
  copy: boolean;
}

function operand(op: string, name: string, x: Tensor): Operand {
  if (x.dtype !== 'f32') throw new Error(`${op}: ${name} must be f32, got ${x.dtype} ${shapeStr(x.shape)}`);
  if (x.rank !== 4) throw new Error(`${op}: ${name} must be (B, H, N, d), got ${shapeStr(x.shape)}`);
  if (x.strides[3] === 1 || x.shape[3] === 1) return { t: x, copy: false };
  return { t: launchCopy(x), copy: true };
}

function layout(x: Tensor): number[] {
  return [x.offset, x.strides[0]!, x.strides[1]!, x.strides[2]!];
}

function release(...ops: Operand[]): void {
  for (const o of ops) if (o.copy) o.t.dispose();
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

/** Rows per workgroup (one invocation each): enough for the sequence, at most 64. */
function blockRows(n: number): number {
  let r = 8;
  while (r < n && r < 64) r <<= 1;
  return r;
}

const OPERAND_PARAMS = (n: string): [string, 'u32'][] => [
  [`${n}_off`, 'u32'],
  [`${n}_sb`, 'u32'],
  [`${n}_sh`, 'u32'],
  [`${n}_sn`, 'u32'],
];

/** WGSL: `fn <n>_at(b, h, i) -> u32`, the element index of row i of head (b, h). */
function rowFn(n: string): string {
  return `fn ${n}_at(b: u32, h: u32, i: u32) -> u32 { return p.${n}_off + b * p.${n}_sb + h * p.${n}_sh + i * p.${n}_sn; }`;
}

const COMMON_PARAMS: [string, 'u32' | 'f32'][] = [
  ['d4', 'u32'],
  ['heads', 'u32'],
  ['nq', 'u32'],
  ['nk', 'u32'],
  ['key_len', 'u32'],
  ['causal', 'u32'],
  ['scale_log2', 'f32'],
];

// Scores are kept in base 2 (pre-multiplied by log2 e) so every exponential is one exp2.
const MASKED = '-1.0e30';

// The per-row vectors (q, o, dq, k, v, ...) are vec4 arrays walked by loops over D/4 with
// uniform indices, and each step handles 8 tile rows: every register load is then shared by 8
// dot products or 8 multiply-adds. (Fully unrolled straight-line code would keep them in SIMD
// registers but takes a CPU adapter's compiler minutes per pipeline; the loop bound is a uniform
// parameter, not the constant D4, so that the compiler does not unroll them either.)
const range = (n: number) => [...Array(n).keys()];

/** `var <name>: array<vec4<f32>, D4>` with element c set to `init` (a WGSL expression of c). */
function regs(name: string, init: string): string {
  return `  var ${name}: array<vec4<f32>, D4>;\n  for (var c = 0u; c < p.d4; c++) { ${name}[c] = ${init}; }`;
}

/** Dot products of 8 consecutive tile rows g..g+7 with a register array, as `<name>_a`, `<name>_b`. */
function rowDots8(name: string, reg: string, tile: string): string {
  const four = (o: number) => `vec4<f32>(${range(4).map((t) => `dot(r, ${tile}[(g + ${o + t}u) * D4 + c])`).join(', ')})`;
  return `        var ${name}_a = vec4<f32>(0.0);
        var ${name}_b = vec4<f32>(0.0);
        for (var c = 0u; c < p.d4; c++) {
          let r = ${reg}[c];
          ${name}_a += ${four(0)};
          ${name}_b += ${four(4)};
        }`;
}

/** reg[c] = reg[c]·scale + Σ_t w_t · tile[(g+t)·D4 + c] over 8 rows, weights `<w>a`, `<w>b`. */
function accumulate8(reg: string, tile: string, w: string, scale?: string): string {
  const terms = range(8).map((t) => `${w}${t < 4 ? 'a' : 'b'}.${'xyzw'[t % 4]} * ${tile}[(g + ${t}u) * D4 + c]`);
  return `        for (var c = 0u; c < p.d4; c++) { ${reg}[c] = ${scale ? `${reg}[c] * ${scale}` : `${reg}[c]`} + ${terms.join(' + ')}; }`;
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

/** Cooperative load of rows r0.. of a (b, h) operand into a vec4 tile; rows ≥ count are zero. */
function loadTile(tile: string, buffer: string, at: string, rowsConst: string, count: string, scale = ''): string {
  return `    for (var e = lid.x; e < ${rowsConst} * D4; e += WG_X) {
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

function forwardSpec(d: number, bc: number, br: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  return {
    name: 'attention_forward',
    variant: `d${d}_bc${bc}`,
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
  let row0 = wid.x * WG_X;
  let i = row0 + lid.x;
  let valid = i < p.nq;
  let qa = q_at(b, h, min(i, p.nq - 1u));
${regs('q', 'ld_Q(qa + 4u * c, 4u * c) * p.scale_log2')}
${regs('o', 'vec4<f32>(0.0)')}
  var m = ${MASKED};
  var l = 0.0;
  // Keys this row may see: j < lim. The block's loop bound is the largest lim of its rows.
  var kend = p.key_len;
  var lim = p.key_len;
  if (p.causal != 0u) {
    kend = min(kend, min(row0 + WG_X, p.nq));
    lim = min(lim, i + 1u);
  }
  for (var j0 = 0u; j0 < kend; j0 += BT) {
    let nj = min(BT, kend - j0);
    let r0 = j0;
${loadTile('Ks', 'K', 'k_at', 'BT', 'nj')}
${loadTile('Vs', 'V', 'v_at', 'BT', 'nj')}
    workgroupBarrier();
    if (valid) {
      for (var g = 0u; g < nj; g += 8u) {
${rowDots8('s', 'q', 'Ks')}
        let ja = vec4<u32>(j0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
        let sa = select(vec4<f32>(${MASKED}), s_a, ja < vec4<u32>(lim));
        let sb = select(vec4<f32>(${MASKED}), s_b, ja + vec4<u32>(4u) < vec4<u32>(lim));
        let mt = max(m, max(max(max(sa.x, sa.y), max(sa.z, sa.w)), max(max(sb.x, sb.y), max(sb.z, sb.w))));
        let alpha = exp2(m - mt);
        let pa = exp2(sa - vec4<f32>(mt));
        let pb = exp2(sb - vec4<f32>(mt));
        l = l * alpha + dot(pa, vec4<f32>(1.0)) + dot(pb, vec4<f32>(1.0));
${accumulate8('o', 'Vs', 'p', 'alpha')}
        m = mt;
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let oa = o_at(b, h, i);
    let inv = 1.0 / l;
${storeRow('O', 'oa', 'o', ' * inv', d)}
    Lse[p.lse_off + (b * p.heads + h) * p.nq + i] = (m + log2(l)) * ${Math.LN2};
  }
}`,
  };
}

function backwardQuerySpec(d: number, bc: number, br: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  return {
    name: 'attention_backward_dq',
    variant: `d${d}_bc${bc}`,
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
  let row0 = wid.x * WG_X;
  let i = row0 + lid.x;
  let valid = i < p.nq;
  let ic = min(i, p.nq - 1u);
  let qa = q_at(b, h, ic);
  let oa = o_at(b, h, ic);
  let ga = do_at(b, h, ic);
${regs('q', 'ld_Q(qa + 4u * c, 4u * c) * p.scale_log2')}
${regs('gr', 'ld_DO(ga + 4u * c, 4u * c)')}
${regs('dq', 'vec4<f32>(0.0)')}
  var delta = 0.0;
  for (var c = 0u; c < p.d4; c++) { delta += dot(gr[c], ld_O(oa + 4u * c, 4u * c)); }
  let row = (b * p.heads + h) * p.nq + ic;
  let lse2 = vec4<f32>(Lse[p.lse_off + row] * ${LOG2E});
  var kend = p.key_len;
  var lim = p.key_len;
  if (p.causal != 0u) {
    kend = min(kend, min(row0 + WG_X, p.nq));
    lim = min(lim, i + 1u);
  }
  for (var j0 = 0u; j0 < kend; j0 += BT) {
    let nj = min(BT, kend - j0);
    let r0 = j0;
${loadTile('Ks', 'K', 'k_at', 'BT', 'nj')}
${loadTile('Vs', 'V', 'v_at', 'BT', 'nj')}
    workgroupBarrier();
    if (valid) {
      for (var g = 0u; g < nj; g += 8u) {
${rowDots8('s', 'q', 'Ks')}
${rowDots8('t', 'gr', 'Vs')}
        let ja = vec4<u32>(j0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
        let pa = select(vec4<f32>(0.0), exp2(s_a - lse2), ja < vec4<u32>(lim));
        let pb = select(vec4<f32>(0.0), exp2(s_b - lse2), ja + vec4<u32>(4u) < vec4<u32>(lim));
        let wa = pa * (t_a - vec4<f32>(delta));
        let wb = pb * (t_b - vec4<f32>(delta));
${accumulate8('dq', 'Ks', 'w')}
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let da = dq_at(b, h, i);
${storeRow('DQ', 'da', 'dq', ' * p.scale', d)}
    Delta[row] = delta;
  }
}`,
  };
}

function backwardKeySpec(d: number, bq: number, br: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  return {
    name: 'attention_backward_dkv',
    variant: `d${d}_bq${bq}`,
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
  let col0 = wid.x * WG_X;
  let j = col0 + lid.x;
  let valid = j < p.nk;
  let live = j < p.key_len;
  let jc = min(j, p.nk - 1u);
  let ka = k_at(b, h, jc);
  let va = v_at(b, h, jc);
${regs('k', 'ld_K(ka + 4u * c, 4u * c)')}
${regs('v', 'ld_V(va + 4u * c, 4u * c)')}
${regs('dk', 'vec4<f32>(0.0)')}
${regs('dv', 'vec4<f32>(0.0)')}
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
      var dv = 0.0;
      if (ii < ni) {
        lv = Lse[p.lse_off + rows + t0 + ii] * ${LOG2E};
        dv = Delta[rows + t0 + ii];
      }
      Ls[ii] = lv;
      Ds[ii] = dv;
    }
    workgroupBarrier();
    if (live) {
      for (var g = 0u; g < ni; g += 8u) {
${rowDots8('s', 'k', 'Qs')}
${rowDots8('t', 'v', 'Gs')}
        let ia = vec4<u32>(t0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
        let ib = ia + vec4<u32>(4u);
        // Row i sees key j when i < iend (tile tail) and, causally, j ≤ i.
        var oka = ia < vec4<u32>(iend);
        var okb = ib < vec4<u32>(iend);
        if (p.causal != 0u) {
          oka = oka & (vec4<u32>(j) <= ia);
          okb = okb & (vec4<u32>(j) <= ib);
        }
        let la = vec4<f32>(Ls[g], Ls[g + 1u], Ls[g + 2u], Ls[g + 3u]);
        let lb = vec4<f32>(Ls[g + 4u], Ls[g + 5u], Ls[g + 6u], Ls[g + 7u]);
        let da = vec4<f32>(Ds[g], Ds[g + 1u], Ds[g + 2u], Ds[g + 3u]);
        let db = vec4<f32>(Ds[g + 4u], Ds[g + 5u], Ds[g + 6u], Ds[g + 7u]);
        let pa = select(vec4<f32>(0.0), exp2(s_a - la), oka);
        let pb = select(vec4<f32>(0.0), exp2(s_b - lb), okb);
        let wa = pa * (t_a - da);
        let wb = pb * (t_b - db);
${accumulate8('dv', 'Gs', 'p')}
${accumulate8('dk', 'Qs', 'w')}
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let kd = dk_at(b, h, j);
    let vd = dv_at(b, h, j);
    // dk accumulated ds·(scale·log2e·q): scale/(scale·log2e) = ln 2 restores scale·ds·q.
${storeRow('DK', 'kd', 'dk', ` * ${Math.LN2}`, d)}
${storeRow('DV', 'vd', 'dv', '', d)}
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
  const Q = operand('attention', 'q', q);
  const K = operand('attention', 'k', k);
  const V = operand('attention', 'v', v);
  const out = headsLast(q, r.Nq, 'attention');
  const lse = empty(q.device, [r.B, r.H, r.Nq], 'f32', 'attention_lse');
  const br = blockRows(r.Nq);
  const spec = forwardSpec(r.d, tileRows(r.d), br);
  q.device.dispatch(
    spec,
    [Q.t.buffer, K.t.buffer, V.t.buffer, out.buffer, lse.buffer],
    [Math.ceil(r.d / 4), r.H, r.Nq, r.Nk, r.keyLength, r.causal ? 1 : 0, r.scale * LOG2E, ...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(out), lse.offset],
    [Math.ceil(r.Nq / br), r.B * r.H, 1],
  );
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
 * probabilities). Each gradient is (B, H, N, d) stored as (B, N, H, d).
 */
export function launchAttentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  dOut: Tensor,
  opts: AttentionOptions = {},
): AttentionGrads {
  const r = resolve('attention backward', q, k, v, opts);
  const shapes = `q ${shapeStr(q.shape)}, out ${shapeStr(out.shape)}, dOut ${shapeStr(dOut.shape)}, lse ${shapeStr(lse.shape)}`;
  if (out.shape.join() !== q.shape.join() || dOut.shape.join() !== q.shape.join()) {
    throw new Error(`attention backward: out and dOut must have q's shape (B, H, Nq, d); got ${shapes}`);
  }
  if (lse.shape.join() !== [r.B, r.H, r.Nq].join() || !lse.isContiguous() || lse.dtype !== 'f32') {
    throw new Error(`attention backward: lse must be a contiguous f32 (B, H, Nq); got ${shapes}`);
  }
  const Q = operand('attention backward', 'q', q);
  const K = operand('attention backward', 'k', k);
  const V = operand('attention backward', 'v', v);
  const O = operand('attention backward', 'out', out);
  const G = operand('attention backward', 'dOut', dOut);
  const dq = headsLast(q, r.Nq, 'attention_dq');
  const dk = headsLast(k, r.Nk, 'attention_dk');
  const dv = headsLast(v, r.Nk, 'attention_dv');
  const delta = empty(q.device, [r.B, r.H, r.Nq], 'f32', 'attention_delta');
  const common = [Math.ceil(r.d / 4), r.H, r.Nq, r.Nk, r.keyLength, r.causal ? 1 : 0, r.scale * LOG2E, r.scale];
  const brq = blockRows(r.Nq);
  q.device.dispatch(
    backwardQuerySpec(r.d, tileRows(r.d), brq),
    [Q.t.buffer, K.t.buffer, V.t.buffer, O.t.buffer, G.t.buffer, lse.buffer, dq.buffer, delta.buffer],
    [...common, ...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(O.t), ...layout(G.t), ...layout(dq), lse.offset],
    [Math.ceil(r.Nq / brq), r.B * r.H, 1],
  );
  const brk = blockRows(r.Nk);
  q.device.dispatch(
    backwardKeySpec(r.d, tileRows(r.d), brk),
    [Q.t.buffer, K.t.buffer, V.t.buffer, G.t.buffer, lse.buffer, delta.buffer, dk.buffer, dv.buffer],
    [...common, ...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(G.t), ...layout(dk), ...layout(dv), lse.offset],
    [Math.ceil(r.Nk / brk), r.B * r.H, 1],
  );
  delta.dispose();
  release(Q, K, V, O, G);
  return { dq, dk, dv };
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
  const Q = operand('clsAttentionScores', 'q', q);
  const K = operand('clsAttentionScores', 'k', k);
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
