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

/** Rows per tile in workgroup memory: two tiles of `rows × d` floats stay within 16 KiB. */
function tileRows(d: number): number {
  let r = 32;
  while (r > 1 && r * d > 2048) r >>= 1;
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
  ['heads', 'u32'],
  ['nq', 'u32'],
  ['nk', 'u32'],
  ['key_len', 'u32'],
  ['causal', 'u32'],
  ['scale_log2', 'f32'],
];

// Scores are kept in base 2 (pre-multiplied by log2 e) so every exponential is one exp2.
const MASKED = '-1.0e30';

function forwardSpec(d: number, bc: number, br: number): KernelSpec {
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
const D: u32 = ${d}u;
const BC: u32 = ${bc}u;
var<workgroup> Ks: array<f32, ${bc * d}>;
var<workgroup> Vs: array<f32, ${bc * d}>;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('o')}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let row0 = wid.x * WG_X;
  let i = row0 + lid.x;
  let valid = i < p.nq;
  var q: array<f32, D>;
  var o: array<f32, D>;
  let qa = q_at(b, h, min(i, p.nq - 1u));
  for (var c = 0u; c < D; c++) { q[c] = Q[qa + c] * p.scale_log2; o[c] = 0.0; }
  var m = ${MASKED};
  var l = 0.0;
  var kend = p.key_len;
  if (p.causal != 0u) { kend = min(kend, min(row0 + WG_X, p.nq)); }
  for (var j0 = 0u; j0 < kend; j0 += BC) {
    let nj = min(BC, kend - j0);
    for (var e = lid.x; e < nj * D; e += WG_X) {
      let jj = e / D;
      let c = e % D;
      Ks[e] = K[k_at(b, h, j0 + jj) + c];
      Vs[e] = V[v_at(b, h, j0 + jj) + c];
    }
    workgroupBarrier();
    if (valid) {
      var s: array<f32, BC>;
      var mt = m;
      for (var jj = 0u; jj < nj; jj++) {
        var acc = 0.0;
        for (var c = 0u; c < D; c++) { acc += q[c] * Ks[jj * D + c]; }
        if (p.causal != 0u && j0 + jj > i) { acc = ${MASKED}; }
        s[jj] = acc;
        mt = max(mt, acc);
      }
      let alpha = exp2(m - mt);
      l *= alpha;
      for (var c = 0u; c < D; c++) { o[c] *= alpha; }
      for (var jj = 0u; jj < nj; jj++) {
        let pj = exp2(s[jj] - mt);
        l += pj;
        for (var c = 0u; c < D; c++) { o[c] += pj * Vs[jj * D + c]; }
      }
      m = mt;
    }
    workgroupBarrier();
  }
  if (valid) {
    let oa = o_at(b, h, i);
    let inv = 1.0 / l;
    for (var c = 0u; c < D; c++) { O[oa + c] = o[c] * inv; }
    Lse[p.lse_off + (b * p.heads + h) * p.nq + i] = (m + log2(l)) * ${Math.LN2};
  }
}`,
  };
}

function backwardQuerySpec(d: number, bc: number, br: number): KernelSpec {
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
const D: u32 = ${d}u;
const BC: u32 = ${bc}u;
var<workgroup> Ks: array<f32, ${bc * d}>;
var<workgroup> Vs: array<f32, ${bc * d}>;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('o')}
${rowFn('do')}
${rowFn('dq')}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let row0 = wid.x * WG_X;
  let i = row0 + lid.x;
  let valid = i < p.nq;
  let ic = min(i, p.nq - 1u);
  var q: array<f32, D>;
  var g: array<f32, D>;
  var dq: array<f32, D>;
  let qa = q_at(b, h, ic);
  let oa = o_at(b, h, ic);
  let ga = do_at(b, h, ic);
  var delta = 0.0;
  for (var c = 0u; c < D; c++) {
    q[c] = Q[qa + c] * p.scale_log2;
    g[c] = DO[ga + c];
    delta += g[c] * O[oa + c];
    dq[c] = 0.0;
  }
  let row = (b * p.heads + h) * p.nq + ic;
  let lse2 = Lse[p.lse_off + row] * ${LOG2E};
  var kend = p.key_len;
  if (p.causal != 0u) { kend = min(kend, min(row0 + WG_X, p.nq)); }
  for (var j0 = 0u; j0 < kend; j0 += BC) {
    let nj = min(BC, kend - j0);
    for (var e = lid.x; e < nj * D; e += WG_X) {
      let jj = e / D;
      let c = e % D;
      Ks[e] = K[k_at(b, h, j0 + jj) + c];
      Vs[e] = V[v_at(b, h, j0 + jj) + c];
    }
    workgroupBarrier();
    if (valid) {
      for (var jj = 0u; jj < nj; jj++) {
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < D; c++) {
          s += q[c] * Ks[jj * D + c];
          dp += g[c] * Vs[jj * D + c];
        }
        var pr = exp2(s - lse2);
        if (p.causal != 0u && j0 + jj > i) { pr = 0.0; }
        let ds = pr * (dp - delta);
        for (var c = 0u; c < D; c++) { dq[c] += ds * Ks[jj * D + c]; }
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let da = dq_at(b, h, i);
    for (var c = 0u; c < D; c++) { DQ[da + c] = dq[c] * p.scale; }
    Delta[row] = delta;
  }
}`,
  };
}

function backwardKeySpec(d: number, bq: number, br: number): KernelSpec {
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
const D: u32 = ${d}u;
const BQ: u32 = ${bq}u;
var<workgroup> Qs: array<f32, ${bq * d}>;
var<workgroup> Gs: array<f32, ${bq * d}>;
var<workgroup> Ls: array<f32, ${bq}>;
var<workgroup> Ds: array<f32, ${bq}>;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('do')}
${rowFn('dk')}
${rowFn('dv')}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let col0 = wid.x * WG_X;
  let j = col0 + lid.x;
  let valid = j < p.nk;
  let live = j < p.key_len;
  let jc = min(j, p.nk - 1u);
  var k: array<f32, D>;
  var v: array<f32, D>;
  var dk: array<f32, D>;
  var dv: array<f32, D>;
  let ka = k_at(b, h, jc);
  let va = v_at(b, h, jc);
  for (var c = 0u; c < D; c++) { k[c] = K[ka + c]; v[c] = V[va + c]; dk[c] = 0.0; dv[c] = 0.0; }
  let rows = (b * p.heads + h) * p.nq;
  // Keys past key_len get no gradient; causal rows before the block's first key see none of it.
  var i0 = 0u;
  if (p.causal != 0u) { i0 = col0; }
  var iend = p.nq;
  if (col0 >= p.key_len) { iend = 0u; }
  for (var t0 = i0; t0 < iend; t0 += BQ) {
    let ni = min(BQ, iend - t0);
    for (var e = lid.x; e < ni * D; e += WG_X) {
      let ii = e / D;
      let c = e % D;
      Qs[e] = Q[q_at(b, h, t0 + ii) + c] * p.scale_log2;
      Gs[e] = DO[do_at(b, h, t0 + ii) + c];
    }
    for (var ii = lid.x; ii < ni; ii += WG_X) {
      Ls[ii] = Lse[p.lse_off + rows + t0 + ii] * ${LOG2E};
      Ds[ii] = Delta[rows + t0 + ii];
    }
    workgroupBarrier();
    if (live) {
      for (var ii = 0u; ii < ni; ii++) {
        var s = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < D; c++) {
          s += Qs[ii * D + c] * k[c];
          dp += Gs[ii * D + c] * v[c];
        }
        var pr = exp2(s - Ls[ii]);
        if (p.causal != 0u && j > t0 + ii) { pr = 0.0; }
        let ds = pr * (dp - Ds[ii]);
        for (var c = 0u; c < D; c++) {
          dv[c] += pr * Gs[ii * D + c];
          dk[c] += ds * Qs[ii * D + c];
        }
      }
    }
    workgroupBarrier();
  }
  if (valid) {
    let ka2 = dk_at(b, h, j);
    let va2 = dv_at(b, h, j);
    // dk accumulated ds·(scale·log2e·q): scale/(scale·log2e) = ln 2 restores scale·ds·q.
    for (var c = 0u; c < D; c++) { DK[ka2 + c] = dk[c] * ${Math.LN2}; DV[va2 + c] = dv[c]; }
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
    [r.H, r.Nq, r.Nk, r.keyLength, r.causal ? 1 : 0, r.scale * LOG2E, ...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(out), lse.offset],
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
  const common = [r.H, r.Nq, r.Nk, r.keyLength, r.causal ? 1 : 0, r.scale * LOG2E, r.scale];
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
