// Matmul kernel families, their register / workgroup tilings and the default for an adapter.
//
// Kernel families (kept side by side, each correct on any adapter):
// - 'subgroup': for CPU adapters (lavapipe) with a fixed subgroup size. One subgroup per
//   workgroup, each lane a 4-row × 2·SG-column block straight from storage; the lanes load B's
//   chunk cooperatively (a vec4 each) and broadcast it to each other. Needs vec4-aligned operands
//   and falls back to 'rows' otherwise.
// - 'subgroup-wide': the same with 4·SG columns per lane, for CPUs with 32 vector registers
//   (AVX-512VL): each row of A a lane loads then feeds twice the columns.
// - 'rows': for CPU adapters without subgroups. Register blocking straight from storage, no
//   workgroup memory; all invocations of a workgroup share the same output columns.
// - 'tiled': for GPUs. Workgroup-memory tiles of A and B, each invocation a 4×4 block.
import type { Device } from '../../runtime.js';
import { fixedSubgroupSize, isCpuAdapter } from '../adapter.js';

export type MatmulActivation = 'gelu' | 'quick_gelu' | 'relu';
/** Per-invocation register block and workgroup shape of each family. */
export interface Tiling {
  wg: number;
  /** Output rows per invocation. */
  tm: number;
  /** Output columns per invocation (multiple of 4). */
  tn: number;
}

// GFLOP/s at 1024³ on lavapipe (2 cores, AVX2), f32, A·Bᵀ / A·B, as flops per 2 cores of process
// CPU time (other jobs shared the cores; the FMA ceiling measured the same way was 65-75; the
// kernels bench notes the same figure as "by CPU time"):
//   subgroup  4×16 per lane ............ 36 / 34   <- default on CPU adapters with fixed subgroups
//   subgroup  2×32, 2×16 ............... 26 / 34, 27 / 29
//   subgroup  8×8, 4×8, 1×32, 4×32 ..... 22 / 23, 22 / 19, - / 22, - / 22
//   rows      4×8, workgroup 64 ........ 13.5      <- CPU adapters without subgroups
//   rows      4×16, workgroup 8 ........ 8.6       (64 accumulators: spills; as the first quick kernel)
//   rows      8×8, 2×8, 2×4, 1×12, 1×8 . 5.7, 4.2, 9.6, 6.3, 4.1
//   tiled     64×64 tile, 4×4 .......... 3.8 / 2.7 (workgroup memory buys nothing on a CPU)
// On a 2-core AVX-512 host (Intel Xeon, AVX-512VL, so 32 vector registers), GFLOP/s at 1024³ /
// 1576×192×576 Bᵀ / 1576×768×192 Bᵀ / 1576×192×768 / 192×1576×768 Aᵀ (the ViT-Ti/16@224 training
// step's shapes at batch 8), one run each:
//   subgroup-wide 4×32 ................. 45.5 / 40.0 / 41.4 / 38.2 / 42.9   <- default there
//   subgroup  4×16 ..................... 39.2 / 36.8 / 39.0 / 35.0 / 39.3
//   subgroup  8×16, 2×32 ............... 32.3 / 34.2 / 38.8 / 32.9 / 36.3, 35.1 / 33.0 / 35.7 / 32.4 / -
// (the AVX2 host above, 16 vector registers, measured 4×32 at 22 against 4×16's 34-36.) Where N
// fills the wide block poorly the default takes 'subgroup' instead (fitColumns).
// On an NVIDIA H200 through Vulkan (subgroup size 32, so 'subgroup' runs as 'rows'), f32 TFLOP/s
// at 1024³ / 2048³ / 4096³ / 785×768×2304 Bᵀ / 12560×3072×768 Bᵀ, one-off run of a timing loop:
//   tiled     64×64 tile, 4×4 .......... 10.2 / 14.5 / 15.7 / 10.1 / 13.2   <- default on GPUs
//   tiled     128×128 tile, 8×8, BK 8 .. 5.5 / 14.5 / 15.7 / 9.1 / 12.6    (no better: dropped)
//   rows      4×8, workgroup 64 ........ 8.7 / 9.7 / 7.4 / 8.9 / 7.1
// Every scalar of an invocation is a full 8-lane register on lavapipe, so a register block of
// 16+ outputs spills; what pays is loading memory with few instructions: a load whose address
// differs per lane is one gather for 8 values, a uniform one is a scalar load per value. The
// subgroup kernels get B by gathers and hand it to every lane with subgroupBroadcast.

/** Register-blocked families straight from storage, by tiling. */
export const ROWS_TILINGS = {
  rows: { wg: 64, tm: 4, tn: 8 },
} satisfies Record<string, Tiling>;
export type RowsKernel = keyof typeof ROWS_TILINGS;
/** Subgroup families: output rows per lane, and columns per workgroup in units of the subgroup size. */
export const SUBGROUP_TILES = { subgroup: [4, 2], 'subgroup-wide': [4, 4] } as const;
export type SubgroupKernel = keyof typeof SUBGROUP_TILES;
export type MatmulKernel = RowsKernel | SubgroupKernel | TiledKernel;
export const MATMUL_KERNELS: readonly MatmulKernel[] = ['subgroup', 'subgroup-wide', 'rows', 'tiled'];

export interface WorkgroupTiling {
  wgX: number;
  wgY: number;
  tm: number;
  tn: number;
  bk: number;
}
/** Workgroup-memory families, by tiling. */
export const TILED_TILINGS = {
  tiled: { wgX: 16, wgY: 16, tm: 4, tn: 4, bk: 16 },
} satisfies Record<string, WorkgroupTiling>;
export type TiledKernel = keyof typeof TILED_TILINGS;

/**
 * 'subgroup' instead of the default 'subgroup-wide' where N fills the wide block poorly: the
 * wide block then computes more padding columns than the narrow one (ceil(N / 2·SG) odd).
 */
export function fitColumns(kernel: MatmulKernel, N: number, sg: number): MatmulKernel {
  return kernel === 'subgroup-wide' && sg > 0 && Math.ceil(N / (2 * sg)) % 2 === 1 ? 'subgroup' : kernel;
}

/** The kernel family used when none is asked for: see the table above. */
export function defaultKernel(dev: Device): MatmulKernel {
  if (!isCpuAdapter(dev)) return 'tiled';
  if (!fixedSubgroupSize(dev)) return 'rows';
  return dev.info.hostVectorRegisters >= 32 ? 'subgroup-wide' : 'subgroup';
}
