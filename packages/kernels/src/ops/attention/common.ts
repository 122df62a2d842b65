// What the attention kernel families share: how a (B, H, N, d) operand is addressed and bound,
// the parameters every kernel takes, and scores in base 2.
import type { KernelSpec } from '../../kernel.js';
import { type Tensor, shapeStr } from '../../tensor.js';
import { launchCopy } from '../elementwise.js';

/** Widest head dimension: the per-row registers (q, o, dq...) and the tiles must fit. */
export const MAX_HEAD_DIM = 256;

/** log2(e): scores are kept in base 2 (pre-multiplied by log2 e) so every exponential is one exp2. */
export const LOG2E = Math.LOG2E;

/** A score that masks its key: exp2 of it minus any real maximum is 0. */
export const MASKED = '-1.0e30';

/** Offset and strides over B, H and N of one (B, H, N, d) operand (the d stride is 1). */
export const OPERAND_PARAMS = (n: string): [string, 'u32'][] => [
  [`${n}_off`, 'u32'],
  [`${n}_sb`, 'u32'],
  [`${n}_sh`, 'u32'],
  [`${n}_sn`, 'u32'],
];

/** WGSL: `fn <n>_at(b, h, i) -> u32`, the element index of row i of head (b, h). */
export function rowFn(n: string): string {
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

/**
 * The params of an attention pass that addresses `operands` (lower-case names): shape and mask,
 * the backward's scale, each operand's offset and strides, the offset of the log-sum-exp rows.
 */
export function passParams(operands: string[], backward: boolean): KernelSpec['params'] {
  return [...COMMON_PARAMS, ...(backward ? [['scale', 'f32'] as [string, 'f32']] : []), ...operands.flatMap(OPERAND_PARAMS), ['lse_off', 'u32']];
}

/** The operands of the forward, and of a backward pass that binds every gradient. */
export const FORWARD_OPERANDS = ['q', 'k', 'v', 'o'];
export const BACKWARD_OPERANDS = ['q', 'k', 'v', 'o', 'do', 'dq', 'dk', 'dv'];

export const range = (n: number) => [...Array(n).keys()];

/** Joins `f(r)` over the `rpl` rows one invocation owns. */
export const eachRow = (rpl: number) => (f: (r: number) => string, sep = '\n') => range(rpl).map(f).join(sep);

/** A (B, H, N, d) operand as a kernel binds it, and whether it is a copy to release afterwards. */
export interface Operand {
  t: Tensor;
  copy: boolean;
}

/**
 * x as a kernel reads it: copied when its last dim is strided, or, for the kernels that bind
 * operands as vec4 arrays (`vec4`), when its offset or a stride is not a multiple of 4.
 */
export function operand(op: string, name: string, x: Tensor, vec4: boolean): Operand {
  if (x.dtype !== 'f32') throw new Error(`${op}: ${name} must be f32, got ${x.dtype} ${shapeStr(x.shape)}`);
  if (x.rank !== 4) throw new Error(`${op}: ${name} must be (B, H, N, d), got ${shapeStr(x.shape)}`);
  const unit = x.strides[3] === 1 || x.shape[3] === 1;
  if (unit && (!vec4 || [x.offset, ...x.strides.slice(0, 3)].every((v) => v % 4 === 0))) return { t: x, copy: false };
  return { t: launchCopy(x), copy: true };
}

/** The OPERAND_PARAMS values of x: storage offset and strides of its first three dims. */
export function layout(x: Tensor): number[] {
  return [x.offset, x.strides[0]!, x.strides[1]!, x.strides[2]!];
}

export function release(...ops: Operand[]): void {
  for (const o of ops) if (o.copy) o.t.dispose();
}
