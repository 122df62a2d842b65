// What the attention kernel families share: how a (B, H, N, d) operand is addressed, the
// parameters every kernel takes, and scores in base 2.

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

export const COMMON_PARAMS: [string, 'u32' | 'f32'][] = [
  ['d4', 'u32'],
  ['heads', 'u32'],
  ['nq', 'u32'],
  ['nk', 'u32'],
  ['key_len', 'u32'],
  ['causal', 'u32'],
  ['scale_log2', 'f32'],
];
