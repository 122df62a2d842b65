// Fused multi-head attention, FlashAttention-2 style: the forward streams key/value tiles with an
// online softmax, so the N×N scores never reach global memory, and saves only the per-row
// log-sum-exp; the backward recomputes the probabilities from Q, K and that LSE. Three kernel
// families, chosen per call by attentionKernel:
// - lanes (lanes.ts; CPU adapters: with 8-lane subgroups heads up to 32 wide at any length and
//   wider ones up to 160 keys, without them up to 32 keys): each lane owns a row (or two) and
//   walks the other operand's rows, nothing padded to a tile;
// - subgroup (subgroup.ts; CPU adapters that fix subgroups at 8 lanes, head dim a multiple of 4
//   up to 64): tiles go straight from storage to the lanes by subgroupBroadcast, and the backward
//   is one kernel per head that also accumulates dQ (10·N²·d flops);
// - portable (portable.ts; any adapter): tiles pass through workgroup memory, and the backward
//   takes two passes (14·N²·d flops), one over query rows, one over key rows.
// Measured on lavapipe at ViT-B/16@448 (B1 H12 N785 d64) by the kernels bench (apps/bench,
// `attention ...` rows).
//
// Layout: q, k, v, dO are (B, H, N, d) views with any strides over B, H, N and a unit stride over
// d, so q, k and v can be views of one (B, N, 3, H, d) projection without copies. Outputs (O, dQ,
// dK, dV) are stored as (B, N, H, d) and returned as (B, H, N, d) views of that storage: permuting
// them back to (B, N, H, d) gives a contiguous tensor, so merging heads is a free reshape.
import { type Tensor, empty, shapeStr } from '../../tensor.js';
import { launchAssign } from '../elementwise.js';
import { fixedSubgroupSize, isCpuAdapter } from '../adapter.js';
import { LOG2E, MAX_HEAD_DIM, layout, operand, release } from './common.js';
import {
  LANE_DEFAULT_KEYS,
  LANE_MAX_D,
  LANE_MAX_KEYS,
  LANE_SG_DEFAULT_KEYS,
  LANE_SG_WIDE_D,
  laneBackwardKeySpec,
  laneBackwardQuerySpec,
  laneForwardSpec,
  laneSubgroupSpecs,
} from './lanes.js';
import { ROWS_PER_LANE, blockLanes, portableBackwardKeySpec, portableBackwardQuerySpec, portableForwardSpec } from './portable.js';
import { SG_MAX_HEAD_DIM, SG_ROWS, subgroupBackwardSpec, subgroupForwardSpec } from './subgroup.js';

export interface AttentionOptions {
  /** Query i attends only to keys j ≤ i (CLIP's text transformer). Needs Nq = Nk. */
  causal?: boolean;
  /** Keys j ≥ keyLength are masked (padding). Default Nk. */
  keyLength?: number;
  /** Score scale. Default 1/√d. */
  scale?: number;
  /**
   * Kernels that share rows by subgroupBroadcast; default: where the adapter fixes subgroups at 8
   * lanes and the head dim is a multiple of 4 up to 64. true asks for the subgroup family; false
   * forces the portable kernels, or with `kernel: 'lanes'` the lane kernels' form without
   * subgroups (tests cover each).
   */
  subgroups?: boolean;
  /** Kernel family, overriding `subgroups` (but see there for 'lanes'); default: see attentionKernel. */
  kernel?: AttentionKernel;
}

/** The kernel families: short sequences lane by lane, long ones in subgroup tiles, and the portable tiles. */
export type AttentionKernel = 'lanes' | 'subgroup' | 'portable';
export const ATTENTION_KERNELS: readonly AttentionKernel[] = ['lanes', 'subgroup', 'portable'];

/** The lane kernels share rows by subgroupBroadcast where the adapter fixes subgroups at 8 lanes (unless told not to). */
function laneSubgroups(q: Tensor, opts: AttentionOptions): boolean {
  return fixedSubgroupSize(q.device) === 8 && opts.subgroups !== false;
}

function subgroupAble(d: number, q: Tensor): boolean {
  return fixedSubgroupSize(q.device) === 8 && d % 4 === 0 && d <= SG_MAX_HEAD_DIM;
}

/**
 * The family that runs this attention: the one asked for (checked), else on CPU adapters the lane
 * kernels where they are the faster (with 8-lane subgroups: heads up to LANE_SG_WIDE_D wide at
 * any length, wider ones up to LANE_SG_DEFAULT_KEYS keys; without: up to LANE_DEFAULT_KEYS keys),
 * the subgroup kernels beyond (on 8-lane subgroups), the portable ones elsewhere.
 */
export function attentionKernel(q: Tensor, k: Tensor, opts: AttentionOptions = {}): AttentionKernel {
  const d = q.shape[3]!;
  const nk = k.shape[2]!;
  const sgLanes = laneSubgroups(q, opts);
  const laneAble = d % 4 === 0 && d <= LANE_MAX_D && (nk <= LANE_MAX_KEYS || sgLanes);
  const want = opts.kernel ?? (opts.subgroups === true ? 'subgroup' : opts.subgroups === false ? 'portable' : undefined);
  if (want === 'subgroup' && !subgroupAble(d, q)) {
    throw new Error(`attention: the subgroup kernels need subgroups fixed at 8 lanes and a head dim that is a multiple of 4 up to ${SG_MAX_HEAD_DIM} (d = ${d})`);
  }
  if (want === 'lanes' && !laneAble) {
    const keys = sgLanes ? '' : ` and, without 8-lane subgroups, at most ${LANE_MAX_KEYS} keys`;
    throw new Error(`attention: the lane kernels need a head dim that is a multiple of 4 up to ${LANE_MAX_D}${keys} (d = ${d}, ${nk} keys)`);
  }
  if (want) return want;
  if (isCpuAdapter(q.device) && laneAble) {
    if (sgLanes ? d <= LANE_SG_WIDE_D || nk <= LANE_SG_DEFAULT_KEYS : nk <= LANE_DEFAULT_KEYS) return 'lanes';
  }
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
    const sgs = laneSubgroups(q, opts) ? laneSubgroupSpecs(r.d, false) : null;
    const spec = sgs?.forward ?? laneForwardSpec(r.Nk);
    const rowsPerGroup = sgs?.rowsPerGroup ?? 8;
    q.device.dispatch(spec, buffers, [...common, ...operands], [Math.ceil(r.Nq / rowsPerGroup), r.B * r.H, 1]);
  } else if (family === 'subgroup') {
    q.device.dispatch(subgroupForwardSpec(), buffers, [...common, ...operands], [Math.ceil(r.Nq / (8 * SG_ROWS)), r.B * r.H, 1]);
  } else {
    const br = blockLanes(r.Nq);
    q.device.dispatch(portableForwardSpec(r.d, br), buffers, [...common, ...operands], [Math.ceil(r.Nq / (br * ROWS_PER_LANE)), r.B * r.H, 1]);
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
    const sgs = laneSubgroups(q, opts) ? laneSubgroupSpecs(r.d, shared) : null;
    const rowsPerGroup = sgs?.rowsPerGroup ?? 8;
    q.device.dispatch(sgs?.query ?? laneBackwardQuerySpec(), [...inputs, delta.buffer, dq.buffer], params, [Math.ceil(r.Nq / rowsPerGroup), r.B * r.H, 1]);
    q.device.dispatch(sgs?.key ?? laneBackwardKeySpec(shared), [...inputs, delta.buffer, dk.buffer, ...(shared ? [] : [dv.buffer])], params, [Math.ceil(r.Nk / rowsPerGroup), r.B * r.H, 1]);
  } else if (family === 'subgroup') {
    q.device.dispatch(
      subgroupBackwardSpec(shared),
      [Q.t.buffer, K.t.buffer, V.t.buffer, O.t.buffer, G.t.buffer, lse.buffer, delta.buffer, dq.buffer, ...(shared ? [] : [dk.buffer, dv.buffer])],
      [...common, r.scale, ...[Q, K, V, O, G].flatMap((x) => layout(x.t)), ...layout(dq), ...layout(dk), ...layout(dv), lse.offset],
      [1, r.B * r.H, 1],
    );
  } else {
    const brq = blockLanes(r.Nq);
    q.device.dispatch(
      portableBackwardQuerySpec(r.d, brq),
      [Q.t.buffer, K.t.buffer, V.t.buffer, O.t.buffer, G.t.buffer, lse.buffer, dq.buffer, delta.buffer],
      [...common, r.scale, ...layout(Q.t), ...layout(K.t), ...layout(V.t), ...layout(O.t), ...layout(G.t), ...layout(dq), lse.offset],
      [Math.ceil(r.Nq / (brq * ROWS_PER_LANE)), r.B * r.H, 1],
    );
    const brk = blockLanes(r.Nk);
    q.device.dispatch(
      portableBackwardKeySpec(r.d, brk),
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
