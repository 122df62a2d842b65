// What kind of adapter the kernels run on: the kernel families choose their shapes by it.
import type { Device } from '../runtime.js';

/** A software adapter that runs compute on the CPU (lavapipe, SwiftShader): SIMD lanes, no GPU cores. */
export function isCpuAdapter(dev: Device): boolean {
  return dev.info.architecture === 'software' || dev.info.isFallback || /llvmpipe|lavapipe|swiftshader/i.test(dev.info.name);
}

/**
 * The subgroup size the subgroup kernels are compiled for, or 0 where they cannot run: they need
 * 'subgroups' and a size the adapter fixes (min = max), since the lanes that share B are named by
 * constant ids.
 */
export function fixedSubgroupSize(dev: Device): number {
  const { subgroupMinSize: lo, subgroupMaxSize: hi } = dev.info;
  return dev.has('subgroups') && lo === hi && [4, 8, 16].includes(lo) ? lo : 0;
}

/**
 * Invocations per workgroup of a kernel whose invocations each own whole columns (column sums,
 * LayerNorm's parameter gradients): on a CPU adapter one SIMD row (8), since a workgroup runs on
 * one thread and a wider one left a 192-wide layer's columns in one workgroup, on one core;
 * elsewhere `gpu`.
 */
export function columnWorkgroup(dev: Device, gpu: number): number {
  return isCpuAdapter(dev) ? 8 : gpu;
}
