// Matmul throughput of every kept kernel family at square sizes and at the ViT-B/16@448 training
// shapes (one image: 785 tokens; qkv and fc1 forward are x·Wᵀ with W (out, in), fc2 too). The peers
// suite sets the default kernel next to tfjs and jax-js at the same shapes.
import { type Device, MATMUL_KERNELS, type MatmulKernel, type Tensor, defaultKernel, scope, tensor } from '@mpfgvc/kernels';
import { launchMatmul, launchMatmulWithRowSum, launchSum } from '@mpfgvc/kernels/raw';
import { Rng } from '@mpfgvc/kernels/testing';
import { availableParallelism } from 'node:os';
import { timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import type { SuiteOptions } from './options.js';

export interface MatmulShape {
  M: number;
  K: number;
  N: number;
  /** B stored (N, K), as a linear layer's weight. */
  transB: boolean;
  label: string;
}

const square = (n: number): MatmulShape => ({ M: n, K: n, N: n, transB: false, label: `${n}×${n}×${n}` });
const vit = (M: number, K: number, N: number, what: string): MatmulShape => ({ M, K, N, transB: true, label: `${M}×${K}×${N} (${what})` });

export function matmulShapes(quick: boolean): MatmulShape[] {
  if (quick) return [{ M: 33, K: 20, N: 17, transB: false, label: '33×20×17' }, { M: 24, K: 16, N: 40, transB: true, label: '24×16×40 (Bᵀ)' }];
  return [square(512), square(1024), square(2048), vit(785, 768, 2304, 'qkv'), vit(785, 768, 3072, 'fc1'), vit(785, 3072, 768, 'fc2')];
}

export const flops = (s: MatmulShape) => 2 * s.M * s.N * s.K;

/**
 * GFLOP/s per all cores' worth of this process's CPU time over `runs` runs: on a software adapter
 * that shares its cores with other jobs, wall time understates the kernel, CPU time does not
 * (shown for software adapters only: a hardware adapter's work is not this process's CPU time).
 */
export function cpuNote(s: MatmulShape, cpu: NodeJS.CpuUsage, runs: number): string {
  const sec = (cpu.user + cpu.system) / 1e6 / runs / availableParallelism();
  return `≈${(flops(s) / sec / 1e9).toFixed(1)} GFLOP/s by CPU time`;
}

function random(dev: Device, rng: Rng, shape: number[]): Tensor {
  return tensor(dev, rng.uniform(shape.reduce((a, b) => a * b, 1)), shape);
}

export interface MatmulTiming {
  sec: number;
  /** Milliseconds, and GFLOP/s by CPU time on software adapters. */
  note: string;
}

// Seconds per run are long on a software adapter: few repeats, long enough to be stable.
const repeatsFor = (quick: boolean) => (quick ? 1 : 3);

async function timeKernel(dev: Device, s: MatmulShape, a: Tensor, b: Tensor, kernel: MatmulKernel, repeats: number): Promise<MatmulTiming> {
  const run = () => scope(() => void launchMatmul(a, b, { transB: s.transB, kernel }));
  // Warm up outside the CPU-time window: the first run includes the pipeline's compile.
  run();
  await dev.sync();
  const cpu0 = process.cpuUsage();
  const sec = await timeGpu(dev, run, { warmup: 0, repeats });
  const cpu = process.cpuUsage(cpu0);
  return { sec, note: `${(sec * 1e3).toFixed(1)} ms${dev.info.isFallback ? `; ${cpuNote(s, cpu, repeats)}` : ''}` };
}

// The default kernel's timings by shape, per device: `all` runs the kernels suite before the peers
// suite, which then reuses them instead of measuring the same kernel at the same shapes again.
const defaultTimings = new WeakMap<Device, Map<string, MatmulTiming>>();

function timingsOf(dev: Device): Map<string, MatmulTiming> {
  let m = defaultTimings.get(dev);
  if (!m) defaultTimings.set(dev, (m = new Map()));
  return m;
}

/** The default kernel at `s`: measured by the kernels suite earlier in this run, else here. */
export async function defaultMatmulTiming(dev: Device, s: MatmulShape, quick: boolean): Promise<MatmulTiming> {
  const known = timingsOf(dev).get(s.label);
  if (known) return known;
  const rng = new Rng(3);
  const a = random(dev, rng, [s.M, s.K]);
  const b = random(dev, rng, s.transB ? [s.N, s.K] : [s.K, s.N]);
  const t = await timeKernel(dev, s, a, b, defaultKernel(dev), repeatsFor(quick));
  a.dispose();
  b.dispose();
  timingsOf(dev).set(s.label, t);
  return t;
}

export async function matmulRows(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rng = new Rng(3);
  const rows: Row[] = [];
  const chosen = defaultKernel(dev);
  for (const s of matmulShapes(Boolean(opts.quick))) {
    const a = random(dev, rng, [s.M, s.K]);
    const b = random(dev, rng, s.transB ? [s.N, s.K] : [s.K, s.N]);
    for (const kernel of MATMUL_KERNELS) {
      const t = await timeKernel(dev, s, a, b, kernel, repeatsFor(Boolean(opts.quick)));
      if (kernel === chosen) timingsOf(dev).set(s.label, t);
      rows.push({
        suite: 'kernels',
        name: `matmul ${kernel}`,
        shape: s.label,
        metric: 'throughput',
        value: flops(s) / t.sec / 1e9,
        unit: 'GFLOP/s',
        note: `${t.note}${kernel === chosen ? '; default here' : ''}${variantNote(dev, kernel)}`,
      });
    }
    a.dispose();
    b.dispose();
  }
  return rows;
}

function variantNote(dev: Device, kernel: MatmulKernel): string {
  if (kernel === 'subgroup' && !dev.has('subgroups')) return '; no subgroups here: ran as rows';
  return '';
}

/**
 * A linear layer's weight and bias gradients, dW = dzᵀ·x and db = Σ_rows dz: the matmul that
 * also sums the rows of dzᵀ it loads, against the matmul and a column sum. Shapes of the ViT-Ti/16
 * @224 step (batch 8: 1576 rows) and the `tiny` one (batch 16: 272 rows).
 */
export async function biasGradRows(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const quick = Boolean(opts.quick);
  const rng = new Rng(5);
  const shapes: [number, number, number, string][] = quick
    ? [[24, 8, 12, 'toy']]
    : [[1576, 576, 192, 'ViT-Ti qkv'], [1576, 192, 768, 'ViT-Ti fc2'], [272, 192, 64, 'tiny qkv'], [272, 64, 256, 'tiny fc2']];
  const rows: Row[] = [];
  for (const [R, out, inp, what] of shapes) {
    const dz = random(dev, rng, [R, out]);
    const x = random(dev, rng, [R, inp]);
    const fused = () => scope(() => void launchMatmulWithRowSum(dz, x, { transA: true }));
    const unfused = () => scope(() => void [launchMatmul(dz, x, { transA: true }), launchSum(dz, [0], false)]);
    // The small shapes take well under a millisecond: 20 calls per timed submit.
    const inner = quick || R > 1000 ? 1 : 20;
    const sec: number[] = [];
    for (const run of [fused, unfused]) {
      run();
      await dev.sync();
      sec.push(await timeGpu(dev, run, { warmup: 0, repeats: quick ? 1 : 5, inner }));
    }
    const shape = `rows ${R}, out ${out}, in ${inp} (${what})`;
    rows.push(
      { suite: 'kernels', name: 'dW + bias grad, one matmul', shape, metric: 'time', value: sec[0]! * 1e3, unit: 'ms' },
      { suite: 'kernels', name: 'dW + bias grad, matmul + column sum', shape, metric: 'time', value: sec[1]! * 1e3, unit: 'ms' },
      { suite: 'kernels', name: 'dW + bias grad fused speedup', shape, metric: 'ratio', value: sec[1]! / sec[0]!, unit: 'x' },
    );
    dz.dispose();
    x.dispose();
  }
  return rows;
}
