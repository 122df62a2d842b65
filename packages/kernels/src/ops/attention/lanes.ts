// Attention lane by lane (CPU adapters: short sequences, and with 8-lane subgroups narrow heads at
// any length): each lane of a workgroup of 8 owns a row (a query in the forward and the dQ pass,
// a key in the dK/dV pass; two rows in the subgroup form) and walks the other operand's rows in
// order, nothing padded to a tile. The backward recomputes the probabilities from Q, K and the
// forward's LSE in two kernels, dQ (which also writes D = rowsum(dO ⊙ O)) then dK and dV
// (14·N²·d flops).
//
// Two forms:
// - with subgroups fixed at 8 lanes (`laneSubgroupSpecs`): the lanes load 8 rows of the other
//   operand at once, one each, and hand them round by subgroupBroadcast; each lane owns
//   LANE_SG_ROWS rows, so each broadcast row feeds them all; the head dim is compiled in; the
//   forward takes an online softmax over blocks of 8 keys, so any length fits;
// - without: every lane reads each row of the other operand itself; the forward keeps the row's
//   scores (at most LANE_MAX_KEYS) and takes two passes, max then softmax·V.
// A CPU adapter (lavapipe) loads a storage address that differs per lane lane by lane, and one
// that is the same in every lane the same way unless it is a constant: a row every lane reads
// costs 8 loads without subgroups and one load and a shuffle with them. Measured on lavapipe in one
// run, forward + backward, lane kernels (2 rows per lane) against the subgroup-tile kernels, as
// B × H heads, N tokens, head dim d: 32 × 4, 65, d16 (the demo) 1.9× faster; 16 × 2, 65, d32
// 1.55×; 2 × 4, 785, d16 1.74×; 8 × 2, 197, d32 1.0×; 8 × 12, 65, d64 1.09×; 8 × 3, 129, d64
// 1.11×; 8 × 3, 197, d64 0.96×; 1 × 12, 785, d64 0.82×. One row per lane was 1.3× slower at the
// demo's shape, four rows no faster than two. Hence the defaults below.
//
// Operands are bound as vec4 arrays (head dim a multiple of 4, up to LANE_MAX_D).
import { type KernelSpec, memoSpecs } from '../../kernel.js';
import { BACKWARD_OPERANDS, FORWARD_OPERANDS, LOG2E, MASKED, eachRow, passParams, range, rowFn } from './common.js';

/**
 * Without subgroups: the longest key sequence the lane kernels take by default, and at all (the
 * forward keeps one score per key in each lane). Measured on lavapipe, forward + backward: CLIP
 * prompts (24 × 2 heads, 6 tokens, d 64) 3.5 ms against the subgroup kernels' 17 ms; 17 tokens
 * (d 16) on a par; from 65 tokens on the subgroup kernels are 3-4× faster.
 */
export const LANE_DEFAULT_KEYS = 32;
export const LANE_MAX_KEYS = 256;
/** With 8-lane subgroups: heads up to this wide take the lane kernels at any length by default... */
export const LANE_SG_WIDE_D = 32;
/** ...wider ones up to this many keys (see the measurements above). */
export const LANE_SG_DEFAULT_KEYS = 160;
/** Widest head: a lane keeps two to three rows of the head dim. */
export const LANE_MAX_D = 64;
const D4M = LANE_MAX_D / 4;

/** The score array's length for `nk` keys: two pipelines (short and long), not one per length. */
function scoreSlots(nk: number): number {
  return nk <= 64 ? 64 : LANE_MAX_KEYS;
}

const FORWARD_STORAGE: KernelSpec['storage'] = [
  { name: 'Q', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'K', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'V', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'O', access: 'read_write', type: 'array<vec4<f32>>' },
  { name: 'Lse', access: 'read_write', type: 'array<f32>' },
];

const header = (names: string[]) => `const D4M: u32 = ${D4M}u;\n${names.map(rowFn).join('\n')}`;

const forwardSpec = memoSpecs((slots: number): KernelSpec => {
  return {
    name: 'attention_forward_lanes',
    variant: `n${slots}`,
    storage: FORWARD_STORAGE,
    params: passParams(FORWARD_OPERANDS, false),
    workgroupSize: [8],
    code: `
${header(['q', 'k', 'v', 'o'])}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let i = wid.x * 8u + lid.x;
  let qa = q_at(b, h, min(i, p.nq - 1u)) >> 2u;
  var q: array<vec4<f32>, D4M>;
  for (var c = 0u; c < p.d4; c++) { q[c] = Q[qa + c] * p.scale_log2; }
  var lim = p.key_len;
  var kend = p.key_len;
  if (p.causal != 0u) {
    lim = min(lim, i + 1u);
    kend = min(kend, min(wid.x * 8u + 8u, p.nq));
  }
  var s: array<f32, ${slots}>;
  var m = ${MASKED};
  for (var j = 0u; j < kend; j++) {
    let ka = k_at(b, h, j) >> 2u;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.d4; c++) { acc += q[c] * K[ka + c]; }
    let sj = select(${MASKED}, acc.x + acc.y + acc.z + acc.w, j < lim);
    s[j] = sj;
    m = max(m, sj);
  }
  var o: array<vec4<f32>, D4M>;
  for (var c = 0u; c < p.d4; c++) { o[c] = vec4<f32>(0.0); }
  var l = 0.0;
  for (var j = 0u; j < kend; j++) {
    let pj = exp2(s[j] - m);
    l += pj;
    let va = v_at(b, h, j) >> 2u;
    for (var c = 0u; c < p.d4; c++) { o[c] += pj * V[va + c]; }
  }
  if (i < p.nq) {
    let oa = o_at(b, h, i) >> 2u;
    let inv = 1.0 / l;
    for (var c = 0u; c < p.d4; c++) { O[oa + c] = o[c] * inv; }
    Lse[p.lse_off + (b * p.heads + h) * p.nq + i] = (m + log2(l)) * ${Math.LN2};
  }
}`,
  };
});

/** The forward for `nk` keys: each lane keeps its row's scores, then softmax·V. */
export function laneForwardSpec(nk: number): KernelSpec {
  return forwardSpec(scoreSlots(nk));
}

const BACKWARD_STORAGE: KernelSpec['storage'] = [
  { name: 'Q', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'K', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'V', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'O', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'DO', access: 'read', type: 'array<vec4<f32>>' },
  { name: 'Lse', access: 'read', type: 'array<f32>' },
];

/** dQ (lane: query) and D = rowsum(dO ⊙ O), which the dK/dV pass reads. */
export const laneBackwardQuerySpec = memoSpecs((): KernelSpec => {
  return {
    name: 'attention_backward_q_lanes',
    storage: [...BACKWARD_STORAGE, { name: 'Delta', access: 'read_write', type: 'array<f32>' }, { name: 'DQ', access: 'read_write', type: 'array<vec4<f32>>' }],
    params: passParams(BACKWARD_OPERANDS, true),
    workgroupSize: [8],
    code: `
${header(BACKWARD_OPERANDS)}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let rows = wid.y * p.nq;
  let i = wid.x * 8u + lid.x;
  let iq = min(i, p.nq - 1u);
  let qa = q_at(b, h, iq) >> 2u;
  let oa = o_at(b, h, iq) >> 2u;
  let ga = do_at(b, h, iq) >> 2u;
  var q: array<vec4<f32>, D4M>;
  var g: array<vec4<f32>, D4M>;
  var dq: array<vec4<f32>, D4M>;
  var dl = vec4<f32>(0.0);
  for (var c = 0u; c < p.d4; c++) {
    q[c] = Q[qa + c] * p.scale_log2;
    g[c] = DO[ga + c];
    dl += g[c] * O[oa + c];
    dq[c] = vec4<f32>(0.0);
  }
  let delta = dl.x + dl.y + dl.z + dl.w;
  let lse = Lse[p.lse_off + rows + iq] * ${LOG2E};
  var lim = p.key_len;
  var kend = p.key_len;
  if (p.causal != 0u) {
    lim = min(lim, iq + 1u);
    kend = min(kend, min(wid.x * 8u + 8u, p.nq));
  }
  for (var j = 0u; j < kend; j++) {
    let ka = k_at(b, h, j) >> 2u;
    let va = v_at(b, h, j) >> 2u;
    var sv = vec4<f32>(0.0);
    var dv = vec4<f32>(0.0);
    for (var c = 0u; c < p.d4; c++) {
      sv += q[c] * K[ka + c];
      dv += g[c] * V[va + c];
    }
    let pj = select(0.0, exp2(sv.x + sv.y + sv.z + sv.w - lse), j < lim);
    let ds = pj * (dv.x + dv.y + dv.z + dv.w - delta);
    for (var c = 0u; c < p.d4; c++) { dq[c] += ds * K[ka + c]; }
  }
  if (i < p.nq) {
    Delta[rows + i] = delta;
    let qd = dq_at(b, h, i) >> 2u;
    for (var c = 0u; c < p.d4; c++) { DQ[qd + c] = dq[c] * p.scale; }
  }
}`,
  };
});

/**
 * dK and dV (lane: key), walking the queries that see the key; reads D from the dQ pass. With
 * `shared`, dK and dV are views of one buffer (a dqkv projection gradient) bound once as DK: WebGPU
 * does not let two writable bindings alias.
 */
export const laneBackwardKeySpec = memoSpecs((shared: boolean): KernelSpec => {
  const dv = shared ? 'DK' : 'DV';
  return {
    name: 'attention_backward_kv_lanes',
    variant: shared ? 'shared' : '',
    storage: [
      ...BACKWARD_STORAGE,
      { name: 'Delta', access: 'read', type: 'array<f32>' },
      { name: 'DK', access: 'read_write', type: 'array<vec4<f32>>' },
      ...(shared ? [] : [{ name: 'DV', access: 'read_write' as const, type: 'array<vec4<f32>>' }]),
    ],
    params: passParams(BACKWARD_OPERANDS, true),
    workgroupSize: [8],
    code: `
${header(BACKWARD_OPERANDS)}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let rows = wid.y * p.nq;
  let j = wid.x * 8u + lid.x;
  let jk = min(j, p.nk - 1u);
  let ka = k_at(b, h, jk) >> 2u;
  let va = v_at(b, h, jk) >> 2u;
  var k: array<vec4<f32>, D4M>;
  var v: array<vec4<f32>, D4M>;
  var dk: array<vec4<f32>, D4M>;
  var dv: array<vec4<f32>, D4M>;
  for (var c = 0u; c < p.d4; c++) {
    k[c] = K[ka + c] * p.scale_log2;
    v[c] = V[va + c];
    dk[c] = vec4<f32>(0.0);
    dv[c] = vec4<f32>(0.0);
  }
  // Keys past key_len get no gradient; under the causal mask only queries i >= j see key j.
  let live = j < p.key_len;
  var i0 = 0u;
  if (p.causal != 0u) { i0 = wid.x * 8u; }
  for (var i = i0; i < p.nq; i++) {
    let qa = q_at(b, h, i) >> 2u;
    let ga = do_at(b, h, i) >> 2u;
    var sv = vec4<f32>(0.0);
    var pv = vec4<f32>(0.0);
    for (var c = 0u; c < p.d4; c++) {
      sv += k[c] * Q[qa + c];
      pv += v[c] * DO[ga + c];
    }
    let ok = live && (p.causal == 0u || j <= i);
    let pij = select(0.0, exp2(sv.x + sv.y + sv.z + sv.w - Lse[p.lse_off + rows + i] * ${LOG2E}), ok);
    let ds = pij * (pv.x + pv.y + pv.z + pv.w - Delta[rows + i]);
    for (var c = 0u; c < p.d4; c++) {
      dv[c] += pij * DO[ga + c];
      dk[c] += ds * Q[qa + c];
    }
  }
  if (j < p.nk) {
    let kd = dk_at(b, h, j) >> 2u;
    let vd = dv_at(b, h, j) >> 2u;
    for (var c = 0u; c < p.d4; c++) {
      DK[kd + c] = dk[c] * p.scale;
      ${dv}[vd + c] = dv[c];
    }
  }
}`,
  };
});

// ---- With 8-lane subgroups: the other operand's rows by subgroupBroadcast ----
//
// The head dim is compiled in (one pipeline per d / 4), so a row's vec4 chunks (q, o, dq...) are
// registers, not arrays indexed at run time (which a CPU adapter also reads lane by lane).

/** WGSL: `let <v><c> = <arr>[<at> + c]` for the D4 chunks of a row. */
function rowLoad(v: string, arr: string, at: string, d4: number, scale = ''): string {
  return range(d4)
    .map((c) => `let ${v}${c} = ${arr}[${at} + ${c}u]${scale};`)
    .join(' ');
}

/** WGSL: the vec4 sum Σ_c a<c> · b<c>, reduced to a scalar. */
function rowDot(a: string, b: (c: number) => string, d4: number): string {
  const terms = range(d4).map((c) => `${a}${c} * ${b(c)}`);
  return `dot(${terms.join(' + ')}, vec4<f32>(1.0))`;
}

/** WGSL: `kend`, past the last key any of the workgroup's 8·R query rows sees. */
const sgKeyEnd = (R: number) => `  var kend = p.key_len;
  if (p.causal != 0u) { kend = min(kend, min(row0 + ${8 * R}u, p.nq)); }`;

/** WGSL: the loop over blocks of 8 keys, lane l at key j0 + l (ka, va: its K and V rows). */
const SG_KEY_BLOCKS = `  for (var j0 = 0u; j0 < kend; j0 += 8u) {
    let jl = min(j0 + lane, p.nk - 1u);
    let ka = k_at(b, h, jl) >> 2u;
    let va = v_at(b, h, jl) >> 2u;`;

/** Rows a lane owns in the subgroup form: each broadcast row of the other operand feeds them all. */
const LANE_SG_ROWS = 2;

/**
 * A subgroup lane kernel: its spec, with `body` run by every lane of a workgroup of 8 after the
 * head (b, h), the first row of its LSE and D vectors (`rows`) and the first of the workgroup's
 * 8·R own rows (`row0`) are known.
 */
function sgLaneSpec(name: string, variant: string, storage: KernelSpec['storage'], backward: boolean, R: number, body: string): KernelSpec {
  const operands = backward ? BACKWARD_OPERANDS : FORWARD_OPERANDS;
  return {
    name,
    variant,
    storage,
    params: passParams(operands, backward),
    workgroupSize: [8],
    enable: ['subgroups'],
    code: `
${header(operands)}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let rows = wid.y * p.nq;
  let row0 = wid.x * ${8 * R}u;
${body}
}`,
  };
}

const sgForwardSpec = memoSpecs((d4: number, R: number): KernelSpec => {
  const ch = range(d4);
  const each = eachRow(R);
  return sgLaneSpec('attention_forward_lanes_sg', `d${4 * d4}r${R}`, FORWARD_STORAGE, false, R, `${sgKeyEnd(R)}
${each(
  (r) => `  let i${r} = row0 + ${8 * r}u + lane;
  let qa${r} = q_at(b, h, min(i${r}, p.nq - 1u)) >> 2u;
  ${rowLoad(`q${r}_`, 'Q', `qa${r}`, d4, ' * p.scale_log2')}
  var lim${r} = p.key_len;
  if (p.causal != 0u) { lim${r} = min(lim${r}, i${r} + 1u); }
  var m${r} = ${MASKED};
  var l${r} = 0.0;
${ch.map((c) => `  var o${r}_${c} = vec4<f32>(0.0);`).join('\n')}`,
)}
${SG_KEY_BLOCKS}
    ${rowLoad('kl', 'K', 'ka', d4)}
${range(8)
  .map((t) => `    ${ch.map((c) => `let k${t}_${c} = subgroupBroadcast(kl${c}, ${t}u);`).join(' ')}`)
  .join('\n')}
${each(
  (r) => `${range(8)
    .map((t) => `    let s${r}_${t} = select(${MASKED}, ${rowDot(`q${r}_`, (c) => `k${t}_${c}`, d4)}, j0 + ${t}u < lim${r});`)
    .join('\n')}
    let mt${r} = max(m${r}, max(max(max(s${r}_0, s${r}_1), max(s${r}_2, s${r}_3)), max(max(s${r}_4, s${r}_5), max(s${r}_6, s${r}_7))));
    let alpha${r} = exp2(m${r} - mt${r});
${range(8)
  .map((t) => `    let p${r}_${t} = exp2(s${r}_${t} - mt${r});`)
  .join('\n')}
    l${r} = l${r} * alpha${r} + ${range(8)
      .map((t) => `p${r}_${t}`)
      .join(' + ')};
    m${r} = mt${r};`,
)}
    ${rowLoad('vl', 'V', 'va', d4)}
${ch
  .map(
    (c) => `    {
      ${range(8)
        .map((t) => `let v${t} = subgroupBroadcast(vl${c}, ${t}u);`)
        .join(' ')}
${each((r) => `      o${r}_${c} = o${r}_${c} * alpha${r} + ${range(8).map((t) => `p${r}_${t} * v${t}`).join(' + ')};`)}
    }`,
  )
  .join('\n')}
  }
${each(
  (r) => `  if (i${r} < p.nq) {
    let oa = o_at(b, h, i${r}) >> 2u;
    let inv = 1.0 / l${r};
${ch.map((c) => `    O[oa + ${c}u] = o${r}_${c} * inv;`).join('\n')}
    Lse[p.lse_off + rows + i${r}] = (m${r} + log2(l${r})) * ${Math.LN2};
  }`,
)}`);
});

const sgBackwardQuerySpec = memoSpecs((d4: number, R: number): KernelSpec => {
  const ch = range(d4);
  const each = eachRow(R);
  const storage: KernelSpec['storage'] = [...BACKWARD_STORAGE, { name: 'Delta', access: 'read_write', type: 'array<f32>' }, { name: 'DQ', access: 'read_write', type: 'array<vec4<f32>>' }];
  return sgLaneSpec('attention_backward_q_lanes_sg', `d${4 * d4}r${R}`, storage, true, R, `${sgKeyEnd(R)}
${each(
  (r) => `  let i${r} = row0 + ${8 * r}u + lane;
  let iq${r} = min(i${r}, p.nq - 1u);
  let qa${r} = q_at(b, h, iq${r}) >> 2u;
  let oa${r} = o_at(b, h, iq${r}) >> 2u;
  let ga${r} = do_at(b, h, iq${r}) >> 2u;
  ${rowLoad(`q${r}_`, 'Q', `qa${r}`, d4, ' * p.scale_log2')}
  ${rowLoad(`g${r}_`, 'DO', `ga${r}`, d4)}
  let delta${r} = ${rowDot(`g${r}_`, (c) => `O[oa${r} + ${c}u]`, d4)};
  let lse${r} = Lse[p.lse_off + rows + iq${r}] * ${LOG2E};
  var lim${r} = p.key_len;
  if (p.causal != 0u) { lim${r} = min(lim${r}, iq${r} + 1u); }
${ch.map((c) => `  var dq${r}_${c} = vec4<f32>(0.0);`).join('\n')}`,
)}
${SG_KEY_BLOCKS}
    ${rowLoad('kl', 'K', 'ka', d4)}
    ${rowLoad('vl', 'V', 'va', d4)}
${range(8)
  .map(
    (t) => `    {
      ${ch.map((c) => `let k${c} = subgroupBroadcast(kl${c}, ${t}u); let v${c} = subgroupBroadcast(vl${c}, ${t}u);`).join(' ')}
${each(
  (r) => `      let p${r} = select(0.0, exp2(${rowDot(`q${r}_`, (c) => `k${c}`, d4)} - lse${r}), j0 + ${t}u < lim${r});
      let ds${r} = p${r} * (${rowDot(`g${r}_`, (c) => `v${c}`, d4)} - delta${r});
${ch.map((c) => `      dq${r}_${c} += ds${r} * k${c};`).join('\n')}`,
)}
    }`,
  )
  .join('\n')}
  }
${each(
  (r) => `  if (i${r} < p.nq) {
    Delta[rows + i${r}] = delta${r};
    let qd = dq_at(b, h, i${r}) >> 2u;
${ch.map((c) => `    DQ[qd + ${c}u] = dq${r}_${c} * p.scale;`).join('\n')}
  }`,
)}`);
});

const sgBackwardKeySpec = memoSpecs((d4: number, R: number, shared: boolean): KernelSpec => {
  const ch = range(d4);
  const each = eachRow(R);
  const dvBuf = shared ? 'DK' : 'DV';
  const storage: KernelSpec['storage'] = [
    ...BACKWARD_STORAGE,
    { name: 'Delta', access: 'read', type: 'array<f32>' },
    { name: 'DK', access: 'read_write', type: 'array<vec4<f32>>' },
    ...(shared ? [] : [{ name: 'DV', access: 'read_write' as const, type: 'array<vec4<f32>>' }]),
  ];
  return sgLaneSpec('attention_backward_kv_lanes_sg', `d${4 * d4}r${R}${shared ? '-shared' : ''}`, storage, true, R, `  // Keys past key_len get no gradient; under the causal mask only queries i >= j see key j.
  var i0 = 0u;
  if (p.causal != 0u) { i0 = row0; }
${each(
  (r) => `  let j${r} = row0 + ${8 * r}u + lane;
  let jk${r} = min(j${r}, p.nk - 1u);
  let ka${r} = k_at(b, h, jk${r}) >> 2u;
  let va${r} = v_at(b, h, jk${r}) >> 2u;
  ${rowLoad(`k${r}_`, 'K', `ka${r}`, d4, ' * p.scale_log2')}
  ${rowLoad(`v${r}_`, 'V', `va${r}`, d4)}
  let live${r} = j${r} < p.key_len;
${ch.map((c) => `  var dk${r}_${c} = vec4<f32>(0.0);\n  var dv${r}_${c} = vec4<f32>(0.0);`).join('\n')}`,
)}
  for (var t0 = i0; t0 < p.nq; t0 += 8u) {
    let il = min(t0 + lane, p.nq - 1u);
    let qa = q_at(b, h, il) >> 2u;
    let ga = do_at(b, h, il) >> 2u;
    ${rowLoad('ql', 'Q', 'qa', d4)}
    ${rowLoad('gl', 'DO', 'ga', d4)}
    let lsel = Lse[p.lse_off + rows + il] * ${LOG2E};
    let dl = Delta[rows + il];
${range(8)
  .map(
    (t) => `    {
      ${ch.map((c) => `let q${c} = subgroupBroadcast(ql${c}, ${t}u); let g${c} = subgroupBroadcast(gl${c}, ${t}u);`).join(' ')}
      let it = t0 + ${t}u;
      let ls = subgroupBroadcast(lsel, ${t}u);
      let dt = subgroupBroadcast(dl, ${t}u);
${each(
  (r) => `      let ok${r} = live${r} && it < p.nq && (p.causal == 0u || j${r} <= it);
      let p${r} = select(0.0, exp2(${rowDot(`k${r}_`, (c) => `q${c}`, d4)} - ls), ok${r});
      let ds${r} = p${r} * (${rowDot(`v${r}_`, (c) => `g${c}`, d4)} - dt);
${ch.map((c) => `      dv${r}_${c} += p${r} * g${c};\n      dk${r}_${c} += ds${r} * q${c};`).join('\n')}`,
)}
    }`,
  )
  .join('\n')}
  }
${each(
  (r) => `  if (j${r} < p.nk) {
    let kd = dk_at(b, h, j${r}) >> 2u;
    let vd = dv_at(b, h, j${r}) >> 2u;
${ch.map((c) => `    DK[kd + ${c}u] = dk${r}_${c} * p.scale;\n    ${dvBuf}[vd + ${c}u] = dv${r}_${c};`).join('\n')}
  }`,
)}`);
});

/**
 * The subgroup lane kernels for head dim d (a multiple of 4 up to LANE_MAX_D), LANE_SG_ROWS rows
 * per lane, and the rows each workgroup takes (the grid's x is the rows over that).
 */
export function laneSubgroupSpecs(d: number, shared: boolean): { forward: KernelSpec; query: KernelSpec; key: KernelSpec; rowsPerGroup: number } {
  const d4 = d / 4;
  const R = LANE_SG_ROWS;
  return { forward: sgForwardSpec(d4, R), query: sgBackwardQuerySpec(d4, R), key: sgBackwardKeySpec(d4, R, shared), rowsPerGroup: 8 * R };
}
