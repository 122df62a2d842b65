// Strided addressing shared by elementwise and reduction kernels: an output's linear index is
// decomposed over up to MAX_RANK dims and each operand is addressed through its own strides
// (stride 0 where it is broadcast).
import { type Shape, type Tensor, shapeStr } from '../tensor.js';

export const MAX_RANK = 6;

/** The broadcast shape of several shapes (NumPy rules), or an error naming the op and shapes. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i]!;
      if (d === out[o] || d === 1) continue;
      if (out[o] === 1) out[o] = d;
      else throw new Error(`${op}: shapes ${shapes.map(shapeStr).join(' and ')} do not broadcast`);
    }
  }
  return out;
}

/** Strides of `t` read as if broadcast to `shape` (0 on broadcast dims). */
export function broadcastStrides(op: string, t: Tensor, shape: Shape): number[] {
  const out = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < t.rank; i++) {
    const o = shape.length - t.rank + i;
    const d = t.shape[i]!;
    if (d === shape[o]) out[o] = d === 1 ? 0 : t.strides[i]!;
    else if (d !== 1) throw new Error(`${op}: ${shapeStr(t.shape)} cannot broadcast to ${shapeStr(shape)}`);
  }
  return out;
}

/**
 * Merges adjacent dims that every operand walks contiguously, drops size-1 dims, and pads to
 * MAX_RANK at the front. Returns the dims and each operand's strides.
 */
export function coalesce(op: string, shape: Shape, strides: number[][]): { dims: number[]; strides: number[][] } {
  const dims: number[] = [];
  const ss: number[][] = strides.map(() => []);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i]!;
    if (d === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, k) => ss[k]![last] === s[i]! * d)) {
      dims[last] = dims[last]! * d;
      strides.forEach((s, k) => (ss[k]![last] = s[i]!));
      continue;
    }
    dims.push(d);
    strides.forEach((s, k) => ss[k]!.push(s[i]!));
  }
  if (dims.length > MAX_RANK) {
    throw new Error(`${op}: shape ${shapeStr(shape)} has more than ${MAX_RANK} non-mergeable dims`);
  }
  while (dims.length < MAX_RANK) {
    dims.unshift(1);
    ss.forEach((s) => s.unshift(0));
  }
  return { dims, strides: ss };
}

/** Parameter declarations for the dims and for named operands' strides and offsets. */
export function layoutParams(operands: string[]): [string, 'u32'][] {
  const p: [string, 'u32'][] = [];
  for (let i = 0; i < MAX_RANK; i++) p.push([`d${i}`, 'u32']);
  for (const o of operands) {
    p.push([`off_${o}`, 'u32']);
    for (let i = 0; i < MAX_RANK; i++) p.push([`s${o}${i}`, 'u32']);
  }
  return p;
}

export function layoutValues(dims: number[], offsets: number[], strides: number[][]): number[] {
  const v = [...dims];
  offsets.forEach((o, k) => v.push(o, ...strides[k]!));
  return v;
}

/** WGSL: `fn at_<o>(i: u32) -> u32`, the element index of operand o for output linear index i. */
export function layoutWgsl(operands: string[]): string {
  return operands
    .map((o) => {
      const lines = [`fn at_${o}(linear: u32) -> u32 {`, `  var r = linear;`, `  var idx = p.off_${o};`];
      for (let i = MAX_RANK - 1; i >= 0; i--) {
        lines.push(`  idx += (r % p.d${i}) * p.s${o}${i};`, `  r /= p.d${i};`);
      }
      lines.push(`  return idx;`, `}`);
      return lines.join('\n');
    })
    .join('\n');
}
