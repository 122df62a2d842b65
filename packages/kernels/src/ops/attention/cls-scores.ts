// SsVP's scores from the attention forward: per image, the CLS query's attention probability over
// each patch key, summed over heads, recomputed from q, k and the forward's saved log-sum-exp (the
// probabilities themselves are never stored).
import { type KernelSpec, memoSpecs } from '../../kernel.js';
import { type Tensor, empty, shapeStr } from '../../tensor.js';
import { LOG2E, MAX_HEAD_DIM, OPERAND_PARAMS, layout, operand, release, rowFn } from './common.js';

const CLS_WG = 64;

const clsScoresSpec = memoSpecs((d: number): KernelSpec => {
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
});

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
