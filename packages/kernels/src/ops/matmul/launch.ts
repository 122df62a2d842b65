// Batched matrix multiply out = act(alpha · op(A)·op(B) + bias) + residual with the epilogue fused.
//
// Every operand is addressed in place: each logical matrix is either row-major ('n', the column
// index contiguous) or column-major ('t', a transposed view or an operand asked for transposed),
// with any leading dimension and up to two broadcast batch dims. Only views with no unit stride
// in the matrix dims are copied first.
//
// The kernel families are in kernels.ts, their WGSL in wgsl.ts; this file maps tensors onto them.
import { type Shape, type Tensor, empty, shapeStr } from '../../tensor.js';
import { launchCopy, launchFill } from '../elementwise.js';
import { broadcastShapes, coalesce } from '../layout.js';
import { fixedSubgroupSize } from '../adapter.js';
import {
  type MatmulActivation,
  type MatmulKernel,
  type RowsKernel,
  type SubgroupKernel,
  type Tiling,
  type TiledKernel,
  ROWS_TILINGS,
  SUBGROUP_TILES,
  TILED_TILINGS,
  defaultKernel,
  fitColumns,
} from './kernels.js';
import { ACTIVATIONS, type Layout, type Variant, matmulSpec } from './wgsl.js';

export interface MatmulOptions {
  /** Use Aᵀ (the last two dims swapped) as the left operand. */
  transA?: boolean;
  /** Use Bᵀ as the right operand. */
  transB?: boolean;
  /** f32 vector of length N added to every output row. */
  bias?: Tensor;
  activation?: MatmulActivation;
  /** Scales op(A)·op(B) before the bias. */
  alpha?: number;
  /**
   * Added to the output after the activation (a residual stream: x + proj(·)), of the output's
   * shape; read in place when its rows run at one stride (a contiguous tensor, or a slice of one
   * row per batch entry), else copied first.
   */
  residual?: Tensor;
  /** Kernel family; default: the best one for this adapter (see defaultKernel). */
  kernel?: MatmulKernel;
}

// ---- operands ----

/** One operand as the kernel reads it. */
interface Operand {
  t: Tensor;
  layout: Layout;
  /** Distance between consecutive rows ('n') or columns ('t'), in elements. */
  ld: number;
  rows: number;
  cols: number;
}

/** How the kernel reads `x` as the logical matrix op(x) (rows × cols), or null if it cannot in place. */
function operandOf(x: Tensor, trans: boolean): Operand | null {
  const r = x.rank;
  const [pr, pc] = [x.shape[r - 2]!, x.shape[r - 1]!];
  const [rows, cols] = trans ? [pc, pr] : [pr, pc];
  const sr = trans ? x.strides[r - 1]! : x.strides[r - 2]!;
  const sc = trans ? x.strides[r - 2]! : x.strides[r - 1]!;
  // The stride of a size-1 dim is never used: there pick an ld that keeps vec4 alignment.
  if ((cols === 1 || sc === 1) && (rows === 1 || sr >= cols)) {
    return { t: x, layout: 'n', ld: rows === 1 ? Math.ceil(cols / 4) * 4 : sr, rows, cols };
  }
  if ((rows === 1 || sr === 1) && (cols === 1 || sc >= rows)) {
    return { t: x, layout: 't', ld: cols === 1 ? Math.ceil(rows / 4) * 4 : sc, rows, cols };
  }
  return null;
}

function checkOperands(a: Tensor, b: Tensor, opts: MatmulOptions): void {
  const what = () => `matmul: ${a.dtype}${shapeStr(a.shape)}${opts.transA ? 'ᵀ' : ''} · ${b.dtype}${shapeStr(b.shape)}${opts.transB ? 'ᵀ' : ''}`;
  if (a.rank < 2 || b.rank < 2) throw new Error(`${what()}: operands need at least 2 dims`);
  if (a.device !== b.device) throw new Error(`${what()}: operands live on different devices`);
  for (const t of [a, b]) if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new Error(`${what()}: operands must be f32 or f16`);
  if ((a.dtype === 'f16' || b.dtype === 'f16') && !a.device.has('shader-f16')) {
    throw new Error(`${what()}: f16 operands need the 'shader-f16' feature, which this adapter lacks`);
  }
  const k1 = opts.transA ? a.shape[a.rank - 2]! : a.shape[a.rank - 1]!;
  const k2 = opts.transB ? b.shape[b.rank - 1]! : b.shape[b.rank - 2]!;
  if (k1 !== k2) throw new Error(`${what()}: inner dims ${k1} and ${k2} differ`);
  if (opts.bias) {
    const n = opts.transB ? b.shape[b.rank - 2]! : b.shape[b.rank - 1]!;
    if (opts.bias.dtype !== 'f32' || opts.bias.size !== n || !opts.bias.isContiguous()) {
      throw new Error(`${what()}: bias must be a contiguous f32 tensor of ${n} elements, got ${opts.bias.dtype}${shapeStr(opts.bias.shape)}`);
    }
  }
}

/**
 * The stride between consecutive output rows in `residual` (of the output's shape), when its rows
 * run at one stride with unit column stride; undefined when it must be copied first.
 */
function residualRowStride(residual: Tensor): number | undefined {
  const r = residual.rank;
  if (residual.strides[r - 1] !== 1 && residual.shape[r - 1] !== 1) return undefined;
  const rows = coalesce('matmul', residual.shape.slice(0, -1), [residual.strides.slice(0, -1)]);
  const live = [...rows.dims.keys()].filter((i) => rows.dims[i] !== 1);
  if (live.length === 0) return residual.shape[r - 1]!;
  return live.length === 1 ? rows.strides[0]![live[0]!] : undefined;
}

interface Launch {
  out: Tensor;
  /** The pre-activation, when asked for. */
  pre: Tensor | null;
  /** Σ_k op(A)[m][k] per output row, (...batch, M), when asked for. */
  rowSum: Tensor | null;
}

/** Strides of the batch dims of `x` as broadcast to `batch` (0 where broadcast). */
function batchStrides(x: Tensor, batch: number[]): number[] {
  const lead = batch.length - (x.rank - 2);
  return batch.map((d, i) => (i < lead || x.shape[i - lead] === 1 ? 0 : x.strides[i - lead]!));
}

/** The batch broadcast of A and B as two levels (outer, inner) of (dim, strideA, strideB), or null. */
function batchLevels(a: Tensor, b: Tensor, batch: number[]): { d: number[]; sa: number[]; sb: number[] } | null {
  const l = coalesce('matmul', batch, [batchStrides(a, batch), batchStrides(b, batch)]);
  const live = [...l.dims.keys()].filter((i) => l.dims[i] !== 1);
  if (live.length > 2) return null;
  while (live.length < 2) live.unshift(-1);
  return {
    d: live.map((i) => (i < 0 ? 1 : l.dims[i]!)),
    sa: live.map((i) => (i < 0 ? 0 : l.strides[0]![i]!)),
    sb: live.map((i) => (i < 0 ? 0 : l.strides[1]![i]!)),
  };
}

function launch(a: Tensor, b: Tensor, opts: MatmulOptions, savePre: boolean, sumRows = false): Launch {
  checkOperands(a, b, opts);
  const dev = a.device;
  const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const temps: Tensor[] = [];
  let oa = operandOf(a, Boolean(opts.transA));
  if (!oa) {
    const c = launchCopy(a);
    temps.push(c);
    oa = operandOf(c, Boolean(opts.transA))!;
  }
  let ob = operandOf(b, Boolean(opts.transB));
  if (!ob) {
    const c = launchCopy(b);
    temps.push(c);
    ob = operandOf(c, Boolean(opts.transB))!;
  }
  let levels = batchLevels(oa.t, ob.t, batch);
  if (!levels) {
    // More than two batch levels survive coalescing: materialise both at the broadcast shape.
    const ea = launchCopy(oa.t, [...batch, ...oa.t.shape.slice(-2)]);
    const eb = launchCopy(ob.t, [...batch, ...ob.t.shape.slice(-2)]);
    temps.push(ea, eb);
    oa = operandOf(ea, Boolean(opts.transA))!;
    ob = operandOf(eb, Boolean(opts.transB))!;
    levels = batchLevels(ea, eb, batch)!;
  }
  let M = oa.rows;
  const K = oa.cols;
  const N = ob.cols;
  const outShape: Shape = [...batch, M, N];
  const { d, sa, sb } = levels;
  if (sb[0] === 0 && sb[1] === 0 && oa.layout === 'n' && (d[1] === 1 || sa[1] === M * oa.ld) && (d[0] === 1 || sa[0] === d[1]! * M * oa.ld)) {
    // B is shared by the whole batch and A's rows run on across it: one taller matrix.
    M *= d[0]! * d[1]!;
    levels = { d: [1, 1], sa: [0, 0], sb: [0, 0] };
  }
  if (sumRows && N === 0 && K > 0 && M > 0) {
    for (const t of temps) t.dispose();
    throw new Error(`matmul: row sums of op(A) come from the kernel's first column block, and N = 0 leaves none (A ${shapeStr(a.shape)}, K = ${K})`);
  }
  const out = empty(dev, outShape, 'f32', 'matmul');
  const pre = savePre ? empty(dev, outShape, 'f32', 'matmul_pre') : null;
  const rowSum = sumRows ? empty(dev, outShape.slice(0, -1), 'f32', 'matmul_row_sum') : null;
  let res = opts.residual;
  if (res) {
    if (res.dtype !== 'f32' || res.shape.join() !== outShape.join()) {
      throw new Error(`matmul: residual ${res.dtype}${shapeStr(res.shape)} must be f32 of the output's shape ${shapeStr(outShape)}`);
    }
    if (residualRowStride(res) === undefined) {
      res = launchCopy(res);
      temps.push(res);
    }
  }
  const nBatch = levels.d[0]! * levels.d[1]!;
  if (out.size > 0) {
    const aligned = [oa.t.offset, ob.t.offset, oa.ld, ob.ld, ...levels.sa, ...levels.sb].every((x) => x % 4 === 0);
    let kernel = opts.kernel ?? defaultKernel(dev);
    const sg = kernel in SUBGROUP_TILES && aligned ? fixedSubgroupSize(dev) : 0;
    if (!opts.kernel) kernel = fitColumns(kernel, N, sg);
    // Subgroup kernels read B with vec4 loads only; elsewhere their rows sibling does the work.
    if (kernel in SUBGROUP_TILES && !sg) kernel = 'rows';
    const st = SUBGROUP_TILES[kernel as SubgroupKernel];
    const tiling: Tiling | null = sg ? { wg: sg, tm: st[0], tn: st[1] * sg } : kernel in TILED_TILINGS ? null : ROWS_TILINGS[kernel as RowsKernel];
    const v: Variant = {
      kernel,
      tiling,
      sg,
      la: oa.layout,
      lb: ob.layout,
      layoutParam: tiling === null,
      vec: tiling !== null && aligned,
      vout: tiling !== null && N % 4 === 0,
      fa: oa.t.dtype === 'f16',
      fb: ob.t.dtype === 'f16',
      pre: savePre,
      rowSum: sumRows,
    };
    const wt = TILED_TILINGS[kernel as TiledKernel];
    const groups: [number, number, number] = tiling
      ? [Math.ceil(N / tiling.tn), Math.ceil(M / (tiling.wg * tiling.tm)), nBatch]
      : [Math.ceil(N / (wt.wgX * wt.tn)), Math.ceil(M / (wt.wgY * wt.tm)), nBatch];
    const params = [
      M,
      N,
      K,
      oa.ld,
      ob.ld,
      oa.t.offset,
      ob.t.offset,
      levels.sa[0]!,
      levels.sa[1]!,
      levels.sb[0]!,
      levels.sb[1]!,
      levels.d[1]!,
      opts.bias?.offset ?? 0,
      opts.bias ? 1 : 0,
      opts.activation ? ACTIVATIONS.indexOf(opts.activation) + 1 : 0,
      opts.alpha ?? 1,
      oa.layout === 't' ? 1 : 0,
      ob.layout === 't' ? 1 : 0,
      res?.offset ?? 0,
      res ? residualRowStride(res)! : 0,
      res ? 1 : 0,
    ];
    const buffers = [oa.t.buffer, ob.t.buffer, opts.bias?.buffer ?? oa.t.buffer, res?.buffer ?? oa.t.buffer, out.buffer];
    if (pre) buffers.push(pre.buffer);
    if (rowSum) buffers.push(rowSum.buffer);
    dev.dispatch(matmulSpec(v), buffers, params, groups);
  } else if (rowSum && rowSum.size > 0) {
    // N = 0 (and so K = 0, checked above): no workgroup runs, and the empty sums are 0.
    launchFill(rowSum, 0);
  }
  for (const t of temps) t.dispose();
  return { out, pre, rowSum };
}

/**
 * act(alpha · op(A)·op(B) + bias) as a new contiguous f32 tensor of shape (...batch, M, N).
 * A is (...batchA, M, K) (or (..., K, M) with transA), B is (...batchB, K, N) (or (..., N, K)
 * with transB); batch dims broadcast. Each operand f32 or f16 (f16 needs 'shader-f16'); the
 * accumulation and the output are f32.
 */
export function launchMatmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return launch(a, b, opts, false).out;
}

/**
 * launchMatmul that also returns Σ_k op(A)[m][k] for every output row, (...batch, M), from the
 * same kernel (each lane sums the rows of A it loads anyway). Not scaled by alpha. With A = dZᵀ this
 * is the bias gradient of a linear layer next to its weight gradient: one pass over dZ, not two.
 */
export function launchMatmulWithRowSum(a: Tensor, b: Tensor, opts: Omit<MatmulOptions, 'activation'> = {}): { out: Tensor; rowSum: Tensor } {
  const r = launch(a, b, opts, false, true);
  return { out: r.out, rowSum: r.rowSum! };
}

/** launchMatmul that also returns the pre-activation alpha · op(A)·op(B) + bias, for backward. */
export function launchMatmulWithPre(a: Tensor, b: Tensor, opts: MatmulOptions): { out: Tensor; pre: Tensor } {
  const r = launch(a, b, opts, true);
  return { out: r.out, pre: r.pre! };
}
