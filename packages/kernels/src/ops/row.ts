// What the row-wise kernels (normalisation, softmax, losses) share: they run one workgroup per row
// of the last axis and reduce within it through workgroup memory (kernel.ts WORKGROUP_REDUCE_WGSL),
// with no subgroup operations so that every adapter runs them.
import { type Tensor, shapeStr } from '../tensor.js';
import { launchCopy } from './elementwise.js';

/**
 * Workgroup size for rows of `n` elements; a power of two, as the tree reductions need. One warp
 * per row gives a GPU enough invocations at ViT widths (768 to 3072) and row counts (thousands);
 * wider workgroups cost software adapters dearly: lavapipe switches between every 8 invocations
 * at each barrier, and LayerNorm over [12560, 768] took 720 ms at 256 wide, 85 ms at 64 and
 * 60 ms at 32 there.
 */
export function rowWorkgroup(n: number): number {
  return n <= 8 ? 8 : 32;
}

/** WGSL expression for the row a workgroup owns, with the grid made by `grid1d(rows, 1)`. */
export const ROW_INDEX = 'wid.x + wid.y * nwg.x';

/** The builtins a row kernel's `main` takes. */
export const ROW_ARGS =
  '@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>';

/** Rows and width of a tensor normalised over its last axis; throws unless it is f32 with a non-empty last axis. */
export function rowsOf(op: string, x: Tensor): { rows: number; n: number } {
  if (x.dtype !== 'f32') throw new Error(`${op}: expected f32, got ${x.dtype} ${shapeStr(x.shape)}`);
  const n = x.shape[x.rank - 1];
  if (n === undefined || n === 0) throw new Error(`${op}: needs a non-empty last axis, got ${shapeStr(x.shape)}`);
  return { rows: x.size / n, n };
}

/** `x` when contiguous, else a contiguous copy; dispose it afterwards with `release(x, copy)`. */
export function dense(x: Tensor): Tensor {
  return x.isContiguous() ? x : launchCopy(x);
}

export function release(original: Tensor, maybeCopy: Tensor): void {
  if (maybeCopy !== original) maybeCopy.dispose();
}
