// Attention for short sequences (up to LANE_MAX_KEYS keys; the demo's 65 tokens, ViT-Ti/16@224's
// 197, CLIP text prompts): each lane of a workgroup of 8 owns one row (a query in the forward and
// the dQ pass, a key in the dK/dV pass) and walks the other operand's rows in order, so every row
// of it is one load shared by the 8 lanes (a uniform address: a CPU adapter loads it once and
// broadcasts) and nothing is padded to a tile. The forward keeps the row's scores (at most
// LANE_MAX_KEYS) and takes two passes over the keys, max then softmax·V, so no running rescale of
// the output is needed; the backward recomputes the probabilities from Q, K and the forward's LSE
// in two kernels, dQ (which also writes D = rowsum(dO ⊙ O)) then dK and dV (14·N²·d flops).
//
// The portable and subgroup kernels (portable.ts, subgroup.ts) pad queries and keys to tiles of 32 and carry
// per-row state sized for 64-wide heads: on lavapipe at 17-65 tokens and 16-wide heads they ran at
// 0.5-3 GFLOP/s. Operands are bound as vec4 arrays (head dim a multiple of 4, up to LANE_MAX_D).
import type { KernelSpec } from '../../kernel.js';
import { BACKWARD_OPERANDS, FORWARD_OPERANDS, LOG2E, MASKED, memoSpecs, passParams, rowFn } from './common.js';

/**
 * Longest key sequence the lane kernels take by default, and at all (the forward keeps one score
 * per key in each lane). Measured on lavapipe, forward + backward: CLIP prompts (24 × 2 heads, 6
 * tokens, d 64) 3.5 ms against the subgroup kernels' 17 ms; 17 tokens (d 16) on a par; from 65
 * tokens on the subgroup kernels are 3-4× faster (their broadcast tiles feed four rows per load).
 */
export const LANE_DEFAULT_KEYS = 32;
export const LANE_MAX_KEYS = 256;
/** Widest head: a lane keeps two to three rows of the head dim. */
export const LANE_MAX_D = 64;
const D4M = LANE_MAX_D / 4;

/** The score array's length for `nk` keys: two pipelines (short and long), not one per length. */
function scoreSlots(nk: number): number {
  return nk <= 64 ? 64 : LANE_MAX_KEYS;
}

const header = (names: string[]) => `const D4M: u32 = ${D4M}u;\n${names.map(rowFn).join('\n')}`;

const forwardSpec = memoSpecs((slots: number): KernelSpec => {
  return {
    name: 'attention_forward_lanes',
    variant: `n${slots}`,
    storage: [
      { name: 'Q', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'K', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'V', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'O', access: 'read_write', type: 'array<vec4<f32>>' },
      { name: 'Lse', access: 'read_write', type: 'array<f32>' },
    ],
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
