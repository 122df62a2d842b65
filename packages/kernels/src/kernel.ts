// A kernel is described by data: its storage bindings, its scalar parameters, its workgroup size and
// the WGSL of its body. The binding declarations and the parameter struct are generated from that
// description, so host and shader cannot drift apart.

export type ScalarType = 'u32' | 'i32' | 'f32';

export interface StorageBinding {
  name: string;
  access: 'read' | 'read_write';
  /** WGSL type, e.g. 'array<f32>' or 'array<vec4<f32>>'. */
  type: string;
}

export interface KernelSpec {
  /** Kernel family, e.g. 'matmul'. Appears in labels and error messages. */
  name: string;
  /** Variant within the family (dtype, tile sizes, flags). name + variant is the pipeline cache key. */
  variant?: string;
  storage: StorageBinding[];
  /** Scalar parameters, in order; the WGSL sees them as `p.<name>`. */
  params?: [name: string, type: ScalarType][];
  /** Workgroup size; the WGSL sees it as override constants WG_X, WG_Y, WG_Z. */
  workgroupSize: [number, number?, number?];
  /** Extra override constants (tile sizes); part of the cache key. */
  constants?: Record<string, number>;
  enable?: ('f16' | 'subgroups')[];
  /** The WGSL after the generated declarations; must define `@compute @workgroup_size(WG_X, WG_Y, WG_Z) fn main(...)`. */
  code: string;
}

export function kernelKey(spec: KernelSpec): string {
  const c = spec.constants ? Object.entries(spec.constants).map(([k, v]) => `${k}=${v}`).join(',') : '';
  return `${spec.name}${spec.variant ? `:${spec.variant}` : ''}${c ? `[${c}]` : ''}@${spec.workgroupSize.join('x')}`;
}

/**
 * `build` memoised by its arguments: each variant's WGSL is generated once per process, not on
 * every dispatch (the device caches pipelines by kernel key, but the text would still be rebuilt
 * to compute that key).
 */
export function memoSpecs<A extends (string | number | boolean)[]>(build: (...args: A) => KernelSpec): (...args: A) => KernelSpec {
  const specs = new Map<string, KernelSpec>();
  return (...args: A) => {
    const key = args.join('_');
    let s = specs.get(key);
    if (!s) {
      s = build(...args);
      specs.set(key, s);
    }
    return s;
  };
}

export function paramBytes(spec: KernelSpec): number {
  return Math.max(16, Math.ceil(((spec.params?.length ?? 0) * 4) / 16) * 16);
}

/** The full WGSL of a kernel: enables, bindings, the parameter struct, override constants, body. */
export function kernelSource(spec: KernelSpec): string {
  const lines: string[] = [];
  for (const e of spec.enable ?? []) lines.push(`enable ${e};`);
  spec.storage.forEach((b, i) => {
    lines.push(`@group(0) @binding(${i}) var<storage, ${b.access}> ${b.name}: ${b.type};`);
  });
  const params = spec.params ?? [];
  lines.push(`struct Params {`);
  if (params.length === 0) lines.push(`  _unused: u32,`);
  for (const [name, type] of params) lines.push(`  ${name}: ${type},`);
  lines.push(`}`);
  lines.push(`@group(0) @binding(${spec.storage.length}) var<uniform> p: Params;`);
  const [x, y = 1, z = 1] = spec.workgroupSize;
  lines.push(`override WG_X: u32 = ${x}u;`, `override WG_Y: u32 = ${y}u;`, `override WG_Z: u32 = ${z}u;`);
  for (const [k, v] of Object.entries(spec.constants ?? {})) lines.push(`override ${k}: u32 = ${v}u;`);
  lines.push(spec.code);
  return lines.join('\n');
}

/** Packs parameter values as the generated `Params` struct lays them out (4 bytes each). */
export function packParams(spec: KernelSpec, values: readonly number[], out: DataView, offset: number): void {
  const params = spec.params ?? [];
  if (values.length !== params.length) {
    throw new Error(`kernel ${kernelKey(spec)}: expected ${params.length} params (${params.map((q) => q[0]).join(', ')}), got ${values.length}`);
  }
  for (let i = 0; i < params.length; i++) {
    const t = params[i]![1];
    const v = values[i]!;
    if (t === 'f32') out.setFloat32(offset + 4 * i, v, true);
    else if (t === 'i32') out.setInt32(offset + 4 * i, v, true);
    else {
      if (!(v >= 0 && v <= 0xffffffff && Number.isInteger(v))) {
        throw new Error(`kernel ${kernelKey(spec)}: param ${params[i]![0]} must be a u32, got ${v}`);
      }
      out.setUint32(offset + 4 * i, v, true);
    }
  }
}

/** Workgroup counts covering `n` invocations of `perGroup` each, folded into y when x would exceed the limit. */
export function grid1d(n: number, perGroup: number, maxPerDim = 65535): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / perGroup));
  if (groups <= maxPerDim) return [groups, 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL expression for the linear invocation index of a grid made by `grid1d`. */
export const LINEAR_INDEX = 'gid.x + gid.y * nwg.x * WG_X';

/**
 * 4 when every count and offset given is a multiple of 4, so that a kernel may move vec4s
 * (4× fewer invocations for the same index math; memory-bound kernels gain most), else 1.
 */
export function vec4Width(...values: number[]): 1 | 4 {
  return values.every((v) => v % 4 === 0) ? 4 : 1;
}

/** The WGSL element type of a float array read `width` floats at a time. */
export function floatType(width: 1 | 4): 'f32' | 'vec4<f32>' {
  return width === 4 ? 'vec4<f32>' : 'f32';
}

/**
 * Tree reductions over the workgroup (WG_X a power of two), returning the result to every
 * invocation: wg_sum, wg_sum2 (two sums at once), wg_max. They hold barriers, so call them in
 * uniform control flow only; the trailing barrier lets the next reduction reuse the scratch array.
 */
export const WORKGROUP_REDUCE_WGSL = `
var<workgroup> red: array<vec2<f32>, WG_X>;
fn wg_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn wg_sum(v: f32, lid: u32) -> f32 { return wg_sum2(vec2<f32>(v, 0.0), lid).x; }
fn wg_max(v: f32, lid: u32) -> f32 {
  red[lid] = vec2<f32>(v, 0.0);
  workgroupBarrier();
  for (var s = WG_X / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid].x = max(red[lid].x, red[lid + s].x); }
    workgroupBarrier();
  }
  let r = red[0].x;
  workgroupBarrier();
  return r;
}`;
