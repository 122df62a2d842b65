// Float64 n-dimensional arrays for the CPU references: plain row-major data and naive loops,
// written independently of the WGSL they check.
export interface F64 {
  data: Float64Array;
  shape: number[];
}

export function f64(data: ArrayLike<number>, shape: number[]): F64 {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new Error(`f64: ${data.length} values for shape [${shape.join(', ')}]`);
  return { data: Float64Array.from(data), shape: [...shape] };
}

export function stridesOf(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Multi-index of a linear row-major index. */
export function unravel(i: number, shape: number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let k = shape.length - 1; k >= 0; k--) {
    idx[k] = i % shape[k]!;
    i = Math.floor(i / shape[k]!);
  }
  return idx;
}

/** Row-major index into `shape` of a multi-index of a (possibly higher-rank) broadcast shape. */
export function broadcastIndex(idx: number[], shape: number[]): number {
  const lead = idx.length - shape.length;
  let off = 0;
  for (let k = 0; k < shape.length; k++) off = off * shape[k]! + (shape[k] === 1 ? 0 : idx[lead + k]!);
  return off;
}
