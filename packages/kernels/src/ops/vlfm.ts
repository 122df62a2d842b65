// VLFM cross-modal attention, fused: per image b one query Q0[b] against C+1 keys — the image's
// own (K0[b], V0[b]) and C text keys/values (Kt, Vt) shared by the whole batch — softmax over the
// C+1 scaled scores, weighted sum of the values. Two forms:
// - on adapters with a fixed subgroup size (CPU adapters: lavapipe, SwiftShader) and D a multiple
//   of 4, the text side as matmuls across the batch (each text row loaded once for every image, as
//   a matmul tiles it) and everything per image in one subgroup row kernel each way: the own key's
//   score, the softmax, the own value's share (added in the second matmul's epilogue). Forward:
//   matmul, row kernel, matmul; backward: matmul, row kernel, three matmuls (dQ0 with dS0·K0 in
//   its epilogue, dKt and dVt summed over the batch by the matmul itself). The probabilities are
//   stored with the own key at column 3 and the text keys from column 4 of rows padded to a
//   multiple of 4, so the matmuls read them in place with vec4 loads;
// - elsewhere, per-image workgroup kernels (a tree reduction for the softmax), then per text row
//   dKt, dVt summed over the batch in a fixed order (deterministic without float atomics).
// The per-image loops over C scores and D-long dot products were what the first form replaced:
// on lavapipe every element they load is a gather used once.
import { type KernelSpec, WORKGROUP_REDUCE_WGSL } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { fixedSubgroupSize } from './adapter.js';
import { launchCopy } from './elementwise.js';
import { launchMatmul } from './matmul/index.js';

const WG = 256;
/** Widest embedding: the query row lives in workgroup memory. */
export const VLFM_MAX_DIM = 4096;

const ROWS = (names: string[]): [string, 'u32'][] => names.flatMap((n): [string, 'u32'][] => [[`${n}_off`, 'u32'], [`${n}_s`, 'u32']]);

const FORWARD: KernelSpec = {
  name: 'vlfm_forward',
  storage: [
    { name: 'Q0', access: 'read', type: 'array<f32>' },
    { name: 'K0', access: 'read', type: 'array<f32>' },
    { name: 'V0', access: 'read', type: 'array<f32>' },
    { name: 'Kt', access: 'read', type: 'array<f32>' },
    { name: 'Vt', access: 'read', type: 'array<f32>' },
    { name: 'Out', access: 'read_write', type: 'array<f32>' },
    { name: 'P', access: 'read_write', type: 'array<f32>' },
  ],
  params: [['c', 'u32'], ['dim', 'u32'], ['scale', 'f32'], ...ROWS(['q0', 'k0', 'v0', 'kt', 'vt'])],
  workgroupSize: [WG],
  code: `${WORKGROUP_REDUCE_WGSL}
var<workgroup> qs: array<f32, ${VLFM_MAX_DIM}>;
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.x;
  let n = p.c + 1u;
  let prow = b * n;
  for (var e = lid.x; e < p.dim; e += WG_X) { qs[e] = Q0[p.q0_off + b * p.q0_s + e] * p.scale; }
  workgroupBarrier();
  // Key 0 is the image's own; key i ≥ 1 is text row i - 1. Scores go to P as scratch.
  var m = -3.0e38;
  for (var i = lid.x; i < n; i += WG_X) {
    var s = 0.0;
    if (i == 0u) {
      let base = p.k0_off + b * p.k0_s;
      for (var e = 0u; e < p.dim; e++) { s += qs[e] * K0[base + e]; }
    } else {
      let base = p.kt_off + (i - 1u) * p.kt_s;
      for (var e = 0u; e < p.dim; e++) { s += qs[e] * Kt[base + e]; }
    }
    P[prow + i] = s;
    m = max(m, s);
  }
  m = wg_max(m, lid.x);
  var l = 0.0;
  for (var i = lid.x; i < n; i += WG_X) {
    let pe = exp(P[prow + i] - m);
    P[prow + i] = pe;
    l += pe;
  }
  l = wg_sum(l, lid.x);
  let inv = 1.0 / l;
  for (var i = lid.x; i < n; i += WG_X) { P[prow + i] *= inv; }
  storageBarrier();
  workgroupBarrier();
  for (var e = lid.x; e < p.dim; e += WG_X) {
    var acc = P[prow] * V0[p.v0_off + b * p.v0_s + e];
    for (var i = 1u; i < n; i++) { acc += P[prow + i] * Vt[p.vt_off + (i - 1u) * p.vt_s + e]; }
    Out[b * p.dim + e] = acc;
  }
}`,
};

const BACKWARD_IMAGE: KernelSpec = {
  name: 'vlfm_backward_image',
  storage: [
    { name: 'Q0', access: 'read', type: 'array<f32>' },
    { name: 'K0', access: 'read', type: 'array<f32>' },
    { name: 'V0', access: 'read', type: 'array<f32>' },
    { name: 'Kt', access: 'read', type: 'array<f32>' },
    { name: 'Vt', access: 'read', type: 'array<f32>' },
    { name: 'P', access: 'read', type: 'array<f32>' },
    { name: 'G', access: 'read', type: 'array<f32>' },
    { name: 'DS', access: 'read_write', type: 'array<f32>' },
    { name: 'DQ0', access: 'read_write', type: 'array<f32>' },
    { name: 'DK0', access: 'read_write', type: 'array<f32>' },
    { name: 'DV0', access: 'read_write', type: 'array<f32>' },
  ],
  params: [['c', 'u32'], ['dim', 'u32'], ['scale', 'f32'], ...ROWS(['q0', 'k0', 'v0', 'kt', 'vt', 'g'])],
  workgroupSize: [WG],
  code: `${WORKGROUP_REDUCE_WGSL}
var<workgroup> gs: array<f32, ${VLFM_MAX_DIM}>;
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.x;
  let n = p.c + 1u;
  let prow = b * n;
  for (var e = lid.x; e < p.dim; e += WG_X) { gs[e] = G[p.g_off + b * p.g_s + e]; }
  workgroupBarrier();
  // dP_i = dO·V_i (kept in DS as scratch); delta = Σ_i P_i dP_i = dO·O.
  var delta = 0.0;
  for (var i = lid.x; i < n; i += WG_X) {
    var dp = 0.0;
    if (i == 0u) {
      let base = p.v0_off + b * p.v0_s;
      for (var e = 0u; e < p.dim; e++) { dp += gs[e] * V0[base + e]; }
    } else {
      let base = p.vt_off + (i - 1u) * p.vt_s;
      for (var e = 0u; e < p.dim; e++) { dp += gs[e] * Vt[base + e]; }
    }
    DS[prow + i] = dp;
    delta += P[prow + i] * dp;
  }
  delta = wg_sum(delta, lid.x);
  // dS_i = P_i (dP_i − delta), with the score scale folded in.
  for (var i = lid.x; i < n; i += WG_X) { DS[prow + i] = P[prow + i] * (DS[prow + i] - delta) * p.scale; }
  storageBarrier();
  workgroupBarrier();
  let ds0 = DS[prow];
  let p0 = P[prow];
  for (var e = lid.x; e < p.dim; e += WG_X) {
    var acc = ds0 * K0[p.k0_off + b * p.k0_s + e];
    for (var i = 1u; i < n; i++) { acc += DS[prow + i] * Kt[p.kt_off + (i - 1u) * p.kt_s + e]; }
    DQ0[b * p.dim + e] = acc;
    DK0[b * p.dim + e] = ds0 * Q0[p.q0_off + b * p.q0_s + e];
    DV0[b * p.dim + e] = p0 * gs[e];
  }
}`,
};

const TEXT_WG = 64;

const BACKWARD_TEXT: KernelSpec = {
  name: 'vlfm_backward_text',
  storage: [
    { name: 'Q0', access: 'read', type: 'array<f32>' },
    { name: 'G', access: 'read', type: 'array<f32>' },
    { name: 'P', access: 'read', type: 'array<f32>' },
    { name: 'DS', access: 'read', type: 'array<f32>' },
    { name: 'DKt', access: 'read_write', type: 'array<f32>' },
    { name: 'DVt', access: 'read_write', type: 'array<f32>' },
  ],
  params: [['batch', 'u32'], ['c', 'u32'], ['dim', 'u32'], ...ROWS(['q0', 'g'])],
  workgroupSize: [TEXT_WG],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x;
  let r = gid.y;
  if (e >= p.dim) { return; }
  let n = p.c + 1u;
  var dk = 0.0;
  var dv = 0.0;
  for (var b = 0u; b < p.batch; b++) {
    dk += DS[b * n + r + 1u] * Q0[p.q0_off + b * p.q0_s + e];
    dv += P[b * n + r + 1u] * G[p.g_off + b * p.g_s + e];
  }
  DKt[r * p.dim + e] = dk;
  DVt[r * p.dim + e] = dv;
}`,
};

// ---- The matmul form's row kernels: one subgroup per image (WG_X = the subgroup size) ----

/** Column of the own key's probability in a padded probability row; the text keys follow at TEXT_COL. */
const OWN_COL = 3;
const TEXT_COL = 4;

/** Padded row length of the stored probabilities (and dS): the own column, then C text columns, a multiple of 4. */
function paddedRow(c: number): number {
  return Math.ceil((TEXT_COL + c) / 4) * 4;
}

const ROW_HEAD = `
  let b = wid.x;
  let lane = lid.x;
  let d4 = p.dim / 4u;
  let prow = b * p.ldp;
  let srow = b * p.c;`;

const PROBS_ROW: KernelSpec = {
  name: 'vlfm_probs',
  storage: [
    { name: 'Q0', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'K0', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'V0', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'St', access: 'read', type: 'array<f32>' },
    { name: 'P', access: 'read_write', type: 'array<f32>' },
    { name: 'R', access: 'read_write', type: 'array<vec4<f32>>' },
  ],
  params: [['c', 'u32'], ['dim', 'u32'], ['scale', 'f32'], ['ldp', 'u32'], ...ROWS(['q0', 'k0', 'v0'])],
  workgroupSize: [8],
  enable: ['subgroups'],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {${ROW_HEAD}
  var acc = vec4<f32>(0.0);
  let qa = (p.q0_off + b * p.q0_s) / 4u;
  let ka = (p.k0_off + b * p.k0_s) / 4u;
  for (var c = lane; c < d4; c += WG_X) { acc += Q0[qa + c] * K0[ka + c]; }
  let s0 = subgroupAdd(acc.x + acc.y + acc.z + acc.w) * p.scale;
  // The text scores come scaled from the matmul.
  var m = s0;
  for (var i = lane; i < p.c; i += WG_X) { m = max(m, St[srow + i]); }
  m = subgroupMax(m);
  var l = 0.0;
  for (var i = lane; i < p.c; i += WG_X) {
    let e = exp(St[srow + i] - m);
    P[prow + ${TEXT_COL}u + i] = e;
    l += e;
  }
  let e0 = exp(s0 - m);
  let inv = 1.0 / (subgroupAdd(l) + e0);
  for (var i = lane; i < p.c; i += WG_X) { P[prow + ${TEXT_COL}u + i] *= inv; }
  let p0 = e0 * inv;
  if (lane == 0u) { P[prow + ${OWN_COL}u] = p0; }
  // The own value's share, which the second matmul adds in its epilogue.
  let va = (p.v0_off + b * p.v0_s) / 4u;
  for (var c = lane; c < d4; c += WG_X) { R[b * d4 + c] = p0 * V0[va + c]; }
}`,
};

const DSCORES_ROW: KernelSpec = {
  name: 'vlfm_dscores',
  storage: [
    { name: 'Q0', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'K0', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'V0', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'G', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'P', access: 'read', type: 'array<f32>' },
    { name: 'DPt', access: 'read', type: 'array<f32>' },
    { name: 'DS', access: 'read_write', type: 'array<f32>' },
    { name: 'DK0', access: 'read_write', type: 'array<vec4<f32>>' },
    { name: 'DV0', access: 'read_write', type: 'array<vec4<f32>>' },
    { name: 'R', access: 'read_write', type: 'array<vec4<f32>>' },
  ],
  params: [['c', 'u32'], ['dim', 'u32'], ['scale', 'f32'], ['ldp', 'u32'], ...ROWS(['q0', 'k0', 'v0', 'g'])],
  workgroupSize: [8],
  enable: ['subgroups'],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {${ROW_HEAD}
  let ga = (p.g_off + b * p.g_s) / 4u;
  let va = (p.v0_off + b * p.v0_s) / 4u;
  var acc = vec4<f32>(0.0);
  for (var c = lane; c < d4; c += WG_X) { acc += G[ga + c] * V0[va + c]; }
  let dp0 = subgroupAdd(acc.x + acc.y + acc.z + acc.w);
  let p0 = P[prow + ${OWN_COL}u];
  // delta = Σ_i P_i dP_i = dO·O; dS_i = P_i (dP_i − delta), the score scale folded in.
  var dl = 0.0;
  for (var i = lane; i < p.c; i += WG_X) { dl += P[prow + ${TEXT_COL}u + i] * DPt[srow + i]; }
  let delta = subgroupAdd(dl) + p0 * dp0;
  for (var i = lane; i < p.c; i += WG_X) { DS[prow + ${TEXT_COL}u + i] = P[prow + ${TEXT_COL}u + i] * (DPt[srow + i] - delta) * p.scale; }
  let ds0 = p0 * (dp0 - delta) * p.scale;
  if (lane == 0u) { DS[prow + ${OWN_COL}u] = ds0; }
  let qa = (p.q0_off + b * p.q0_s) / 4u;
  let ka = (p.k0_off + b * p.k0_s) / 4u;
  for (var c = lane; c < d4; c += WG_X) {
    DK0[b * d4 + c] = ds0 * Q0[qa + c];
    DV0[b * d4 + c] = p0 * G[ga + c];
    // dQ0's own-key term, which the dQ0 matmul adds in its epilogue.
    R[b * d4 + c] = ds0 * K0[ka + c];
  }
}`,
};

export interface VlfmOptions {
  /** Score scale. Default 1/√D. */
  scale?: number;
}

function rows(op: string, name: string, x: Tensor, n: number, dim: number): Tensor {
  if (x.rank !== 2 || x.dtype !== 'f32' || x.shape[0] !== n || x.shape[1] !== dim) {
    throw new Error(`${op}: ${name} must be f32 (${n}, ${dim}); got ${x.dtype} ${shapeStr(x.shape)}`);
  }
  return x.strides[1] === 1 || dim === 1 ? x : launchCopy(x);
}

function rowArgs(x: Tensor): number[] {
  return [x.offset, x.strides[0]!];
}

interface Inputs {
  B: number;
  C: number;
  D: number;
  scale: number;
  q0: Tensor;
  k0: Tensor;
  v0: Tensor;
  kt: Tensor;
  vt: Tensor;
  copies: Tensor[];
}

function inputs(op: string, q0: Tensor, k0: Tensor, v0: Tensor, kt: Tensor, vt: Tensor, opts: VlfmOptions): Inputs {
  if (q0.rank !== 2 || kt.rank !== 2) {
    throw new Error(`${op}: q0 must be (B, D) and kt (C, D); got q0 ${shapeStr(q0.shape)}, kt ${shapeStr(kt.shape)}`);
  }
  const [B, D] = q0.shape as [number, number];
  const C = kt.shape[0]!;
  if (B < 1 || B > 65535 || C < 1 || C > 65535 || D < 1 || D > VLFM_MAX_DIM) {
    throw new Error(`${op}: B = ${B}, C = ${C}, D = ${D} outside the supported range (B, C ≤ 65535, D ≤ ${VLFM_MAX_DIM})`);
  }
  const given = [q0, k0, v0, kt, vt];
  const [a, b, c, d, e] = [rows(op, 'q0', q0, B, D), rows(op, 'k0', k0, B, D), rows(op, 'v0', v0, B, D), rows(op, 'kt', kt, C, D), rows(op, 'vt', vt, C, D)];
  const copies = [a, b, c, d, e].filter((t, i) => t !== given[i]);
  return { B, C, D, scale: opts.scale ?? 1 / Math.sqrt(D), q0: a, k0: b, v0: c, kt: d, vt: e, copies };
}

/** The subgroup size of the matmul form for these operands, or 0 for the per-image kernels. */
function matmulForm(x: Inputs, extra: Tensor[] = []): number {
  const sg = fixedSubgroupSize(x.q0.device);
  const aligned = [x.q0, x.k0, x.v0, x.kt, x.vt, ...extra].every((t) => t.offset % 4 === 0 && t.strides[0]! % 4 === 0);
  return sg && x.D % 4 === 0 && aligned ? sg : 0;
}

/** The (B, C) text part of a padded (B, ldp) probability (or dS) tensor. */
function textPart(padded: Tensor, B: number, C: number): Tensor {
  return padded.view([B, C], [padded.strides[0]!, 1], padded.offset - OWN_COL + TEXT_COL);
}

/**
 * Out (B, D) = Σ_i softmax_i(scale·Q0·K_i) V_i over [K0[b]; Kt]; also the probabilities (B, C+1),
 * own key first (in the matmul form a view of rows padded to a multiple of 4).
 */
export function launchVlfm(q0: Tensor, k0: Tensor, v0: Tensor, kt: Tensor, vt: Tensor, opts: VlfmOptions = {}): { out: Tensor; probs: Tensor } {
  const x = inputs('vlfm', q0, k0, v0, kt, vt, opts);
  const dev = q0.device;
  const sg = matmulForm(x);
  let out: Tensor;
  let probs: Tensor;
  if (sg) {
    const ldp = paddedRow(x.C);
    const base = empty(dev, [x.B, ldp], 'f32', 'vlfm_probs');
    probs = base.view([x.B, x.C + 1], [ldp, 1], OWN_COL);
    base.dispose();
    const st = launchMatmul(x.q0, x.kt, { transB: true, alpha: x.scale }); // (B, C)
    const own = empty(dev, [x.B, x.D], 'f32', 'vlfm_own_value');
    dev.dispatch({ ...PROBS_ROW, workgroupSize: [sg] }, [x.q0.buffer, x.k0.buffer, x.v0.buffer, st.buffer, probs.buffer, own.buffer], [x.C, x.D, x.scale, ldp, ...rowArgs(x.q0), ...rowArgs(x.k0), ...rowArgs(x.v0)], [x.B, 1, 1]);
    const pt = textPart(probs, x.B, x.C);
    out = launchMatmul(pt, x.vt, { residual: own });
    for (const t of [st, own, pt]) t.dispose();
  } else {
    out = empty(dev, [x.B, x.D], 'f32', 'vlfm');
    probs = empty(dev, [x.B, x.C + 1], 'f32', 'vlfm_probs');
    dev.dispatch(
      FORWARD,
      [x.q0.buffer, x.k0.buffer, x.v0.buffer, x.kt.buffer, x.vt.buffer, out.buffer, probs.buffer],
      [x.C, x.D, x.scale, ...rowArgs(x.q0), ...rowArgs(x.k0), ...rowArgs(x.v0), ...rowArgs(x.kt), ...rowArgs(x.vt)],
      [x.B, 1, 1],
    );
  }
  for (const t of x.copies) t.dispose();
  return { out, probs };
}

export interface VlfmGrads {
  dq0: Tensor;
  dk0: Tensor;
  dv0: Tensor;
  /** Null when `text` was false. */
  dkt: Tensor | null;
  dvt: Tensor | null;
}

/**
 * Gradients of VLFM attention given dOut (B, D) and the forward's probabilities (as launchVlfm
 * returned them). `text: false` skips the batch-summed dKt, dVt (text side frozen).
 */
export function launchVlfmBackward(
  q0: Tensor,
  k0: Tensor,
  v0: Tensor,
  kt: Tensor,
  vt: Tensor,
  probs: Tensor,
  dOut: Tensor,
  opts: VlfmOptions & { text?: boolean } = {},
): VlfmGrads {
  const x = inputs('vlfm backward', q0, k0, v0, kt, vt, opts);
  const g = rows('vlfm backward', 'dOut', dOut, x.B, x.D);
  const dev = q0.device;
  const sg = matmulForm(x, [g]);
  const ldp = paddedRow(x.C);
  const padded = probs.strides[0] === ldp && probs.strides[1] === 1 && probs.offset % 4 === OWN_COL;
  if (probs.shape.join() !== [x.B, x.C + 1].join() || (sg ? !padded : !probs.isContiguous())) {
    throw new Error(`vlfm backward: probs must be launchVlfm's (B, C+1) = (${x.B}, ${x.C + 1}) probabilities; got ${shapeStr(probs.shape)} strides [${probs.strides.join(', ')}]`);
  }
  const text = opts.text ?? true;
  let grads: VlfmGrads;
  if (sg) {
    const dpt = launchMatmul(g, x.vt, { transB: true }); // (B, C)
    const dsBase = empty(dev, [x.B, ldp], 'f32', 'vlfm_ds');
    const dk0 = empty(dev, [x.B, x.D], 'f32', 'vlfm_dk0');
    const dv0 = empty(dev, [x.B, x.D], 'f32', 'vlfm_dv0');
    const ownQ = empty(dev, [x.B, x.D], 'f32', 'vlfm_dq0_own');
    dev.dispatch(
      { ...DSCORES_ROW, workgroupSize: [sg] },
      [x.q0.buffer, x.k0.buffer, x.v0.buffer, g.buffer, probs.buffer, dpt.buffer, dsBase.buffer, dk0.buffer, dv0.buffer, ownQ.buffer],
      [x.C, x.D, x.scale, ldp, ...rowArgs(x.q0), ...rowArgs(x.k0), ...rowArgs(x.v0), ...rowArgs(g)],
      [x.B, 1, 1],
    );
    const dst = dsBase.view([x.B, x.C], [ldp, 1], TEXT_COL);
    const pt = textPart(probs, x.B, x.C);
    const dq0 = launchMatmul(dst, x.kt, { residual: ownQ });
    grads = { dq0, dk0, dv0, dkt: text ? launchMatmul(dst, x.q0, { transA: true }) : null, dvt: text ? launchMatmul(pt, g, { transA: true }) : null };
    for (const t of [dpt, dsBase, ownQ, dst, pt]) t.dispose();
  } else {
    const ds = empty(dev, [x.B, x.C + 1], 'f32', 'vlfm_ds');
    const dq0 = empty(dev, [x.B, x.D], 'f32', 'vlfm_dq0');
    const dk0 = empty(dev, [x.B, x.D], 'f32', 'vlfm_dk0');
    const dv0 = empty(dev, [x.B, x.D], 'f32', 'vlfm_dv0');
    const probsFlat = probs.offset === 0 ? probs : launchCopy(probs);
    dev.dispatch(
      BACKWARD_IMAGE,
      [x.q0.buffer, x.k0.buffer, x.v0.buffer, x.kt.buffer, x.vt.buffer, probsFlat.buffer, g.buffer, ds.buffer, dq0.buffer, dk0.buffer, dv0.buffer],
      [x.C, x.D, x.scale, ...rowArgs(x.q0), ...rowArgs(x.k0), ...rowArgs(x.v0), ...rowArgs(x.kt), ...rowArgs(x.vt), ...rowArgs(g)],
      [x.B, 1, 1],
    );
    grads = { dq0, dk0, dv0, dkt: null, dvt: null };
    if (text) {
      const dkt = empty(dev, [x.C, x.D], 'f32', 'vlfm_dkt');
      const dvt = empty(dev, [x.C, x.D], 'f32', 'vlfm_dvt');
      dev.dispatch(
        BACKWARD_TEXT,
        [x.q0.buffer, g.buffer, probsFlat.buffer, ds.buffer, dkt.buffer, dvt.buffer],
        [x.B, x.C, x.D, ...rowArgs(x.q0), ...rowArgs(g)],
        [Math.ceil(x.D / TEXT_WG), x.C, 1],
      );
      grads.dkt = dkt;
      grads.dvt = dvt;
    }
    ds.dispose();
    if (probsFlat !== probs) probsFlat.dispose();
  }
  if (g !== dOut) g.dispose();
  for (const t of x.copies) t.dispose();
  return grads;
}
