// The kernels suite: each kernel's throughput next to the adapter's FMA and bandwidth ceilings,
// all measured in this run on this adapter.
import { type Device, type KernelSpec, LINEAR_INDEX, empty, grid1d, scope } from '@mpfgvc/kernels';
import { launchBinary, launchSum } from '@mpfgvc/kernels/raw';
import { timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import { normRows } from './kernels-norm.js';
import { miscRows } from './kernels-misc.js';
import { attentionRows } from './kernels-attention.js';
import { biasGradRows, matmulRows } from './kernels-matmul.js';
import type { SuiteOptions } from './options.js';

const FMA_ITERS = 512;

/** Long chains of independent vec4 FMAs: the arithmetic ceiling the adapter reaches from WGSL. */
const FMA: KernelSpec = {
  name: 'bench_fma',
  storage: [{ name: 'Out', access: 'read_write', type: 'array<vec4<f32>>' }],
  params: [['n', 'u32'], ['seed', 'f32']],
  workgroupSize: [64],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  let s = p.seed + f32(i) * 1e-7;
  var a0 = vec4<f32>(s, s + 1.0, s + 2.0, s + 3.0);
  var a1 = a0 + 0.5; var a2 = a0 + 0.25; var a3 = a0 + 0.125;
  let m = vec4<f32>(0.9999);
  let c = vec4<f32>(1e-4);
  for (var k = 0u; k < ${FMA_ITERS}u; k++) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
  }
  Out[i] = a0 + a1 + a2 + a3;
}`,
};

/** vec4 copy: the storage bandwidth ceiling. */
const COPY: KernelSpec = {
  name: 'bench_copy',
  storage: [
    { name: 'X', access: 'read', type: 'array<vec4<f32>>' },
    { name: 'Out', access: 'read_write', type: 'array<vec4<f32>>' },
  ],
  params: [['n', 'u32']],
  workgroupSize: [256],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  Out[i] = X[i];
}`,
};

export async function ceilings(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const threads = opts.quick ? 1024 : 64 * 1024;
  const out = empty(dev, [threads * 4]);
  const fmaSec = await timeGpu(dev, () => dev.dispatch(FMA, [out.buffer], [threads, 1], grid1d(threads, 64)), { repeats: opts.quick ? 1 : 5 });
  const flops = threads * FMA_ITERS * 8 * 8;
  out.dispose();
  const n4 = opts.quick ? 4096 : 8 * 1024 * 1024;
  const x = empty(dev, [n4 * 4]);
  const y = empty(dev, [n4 * 4]);
  const copySec = await timeGpu(dev, () => dev.dispatch(COPY, [x.buffer, y.buffer], [n4], grid1d(n4, 256)), { repeats: opts.quick ? 1 : 5 });
  x.dispose();
  y.dispose();
  return [
    { suite: 'kernels', name: 'fma ceiling', shape: `${threads} threads`, metric: 'throughput', value: flops / fmaSec / 1e9, unit: 'GFLOP/s' },
    { suite: 'kernels', name: 'bandwidth ceiling (vec4 copy)', shape: `${n4 * 16} B`, metric: 'bandwidth', value: (2 * n4 * 16) / copySec / 1e9, unit: 'GB/s' },
  ];
}

export async function elementwise(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const n = opts.quick ? 4096 : 4 * 1024 * 1024;
  const a = empty(dev, [n]);
  const b = empty(dev, [n]);
  const rows: Row[] = [];
  const addSec = await timeGpu(dev, () => scope(() => void launchBinary('add', a, b)), { repeats: opts.quick ? 1 : 5 });
  rows.push({ suite: 'kernels', name: 'add', shape: `[${n}]`, metric: 'bandwidth', value: (3 * n * 4) / addSec / 1e9, unit: 'GB/s' });
  const rows2 = opts.quick ? 8 : 4096;
  const x = empty(dev, [rows2, 768]);
  const sumSec = await timeGpu(dev, () => scope(() => void launchSum(x, [0], false)), { repeats: opts.quick ? 1 : 5 });
  rows.push({ suite: 'kernels', name: 'sum over rows (bias grad)', shape: `[${rows2}, 768]`, metric: 'bandwidth', value: (rows2 * 768 * 4) / sumSec / 1e9, unit: 'GB/s' });
  for (const t of [a, b, x]) t.dispose();
  return rows;
}

export async function kernelsSuite(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rows = [...(await ceilings(dev, opts)), ...(await elementwise(dev, opts))];
  rows.push(...(await normRows(dev, opts)));
  rows.push(...(await miscRows(dev, opts)));
  rows.push(...(await matmulRows(dev, opts)));
  rows.push(...(await biasGradRows(dev, opts)));
  rows.push(...(await attentionRows(dev, opts)));
  return rows;
}
