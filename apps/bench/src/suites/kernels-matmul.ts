// Matmul throughput of every kept kernel family at square sizes and at the ViT-B/16@448 training
// shapes (one image: 785 tokens; qkv and fc1 forward are x·Wᵀ with W (out, in), fc2 too), next
// to TensorFlow.js WebGPU's tf.matMul measured in the same run on the same adapter.
import { type Device, MATMUL_KERNELS, type MatmulKernel, type Tensor, defaultKernel, launchMatmul, scope, tensor } from '@mpfgvc/kernels';
import { Rng } from '@mpfgvc/kernels/testing';
import { availableParallelism } from 'node:os';
import { timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import type { SuiteOptions } from './kernels.js';

interface Shape {
  M: number;
  K: number;
  N: number;
  /** B stored (N, K), as a linear layer's weight. */
  transB: boolean;
  label: string;
}

const square = (n: number): Shape => ({ M: n, K: n, N: n, transB: false, label: `${n}×${n}×${n}` });
const vit = (M: number, K: number, N: number, what: string): Shape => ({ M, K, N, transB: true, label: `${M}×${K}×${N} (${what})` });

function shapes(quick: boolean): Shape[] {
  if (quick) return [{ M: 33, K: 20, N: 17, transB: false, label: '33×20×17' }, { M: 24, K: 16, N: 40, transB: true, label: '24×16×40 (Bᵀ)' }];
  return [square(512), square(1024), square(2048), vit(785, 768, 2304, 'qkv'), vit(785, 768, 3072, 'fc1'), vit(785, 3072, 768, 'fc2')];
}

const flops = (s: Shape) => 2 * s.M * s.N * s.K;

/**
 * GFLOP/s per all cores' worth of this process's CPU time over `runs` runs: on a software adapter
 * that shares its cores with other jobs, wall time understates the kernel, CPU time does not
 * (shown for software adapters only: a hardware adapter's work is not this process's CPU time).
 */
function cpuNote(s: Shape, cpu: NodeJS.CpuUsage, runs: number): string {
  const sec = (cpu.user + cpu.system) / 1e6 / runs / availableParallelism();
  return `≈${(flops(s) / sec / 1e9).toFixed(1)} GFLOP/s by CPU time`;
}

function random(dev: Device, rng: Rng, shape: number[]): Tensor {
  return tensor(dev, rng.uniform(shape.reduce((a, b) => a * b, 1)), shape);
}

export async function matmulRows(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rng = new Rng(3);
  const rows: Row[] = [];
  const chosen = defaultKernel(dev);
  const ours = new Map<string, number>();
  for (const s of shapes(Boolean(opts.quick))) {
    const a = random(dev, rng, [s.M, s.K]);
    const b = random(dev, rng, s.transB ? [s.N, s.K] : [s.K, s.N]);
    for (const kernel of MATMUL_KERNELS) {
      // Seconds per run are long on a software adapter: few repeats, long enough to be stable.
      const repeats = opts.quick ? 1 : 3;
      const run = () => scope(() => void launchMatmul(a, b, { transB: s.transB, kernel }));
      // Warm up outside the CPU-time window: the first run includes the pipeline's compile.
      run();
      await dev.sync();
      const cpu0 = process.cpuUsage();
      const sec = await timeGpu(dev, run, { warmup: 0, repeats });
      const cpu = process.cpuUsage(cpu0);
      const gflops = flops(s) / sec / 1e9;
      if (kernel === chosen) ours.set(s.label, gflops);
      rows.push({
        suite: 'kernels',
        name: `matmul ${kernel}`,
        shape: s.label,
        metric: 'throughput',
        value: gflops,
        unit: 'GFLOP/s',
        note: `${(sec * 1e3).toFixed(1)} ms${dev.info.isFallback ? `; ${cpuNote(s, cpu, repeats)}` : ''}${kernel === chosen ? '; default here' : ''}${variantNote(dev, kernel)}`,
      });
    }
    a.dispose();
    b.dispose();
  }
  if (opts.quick) return rows;
  const tf = await tfjsRows(shapes(false), dev.info.isFallback);
  rows.push(...tf.rows);
  const key = square(1024).label;
  const theirs = tf.gflops.get(key);
  const mine = ours.get(key);
  rows.push({
    suite: 'kernels',
    name: `matmul ${chosen} / tfjs-webgpu tf.matMul`,
    shape: key,
    metric: 'speed-up',
    value: theirs && mine ? mine / theirs : NaN,
    unit: '×',
    note: theirs ? undefined : 'missing: tfjs did not run',
  });
  return rows;
}

function variantNote(dev: Device, kernel: MatmulKernel): string {
  if (kernel === 'subgroup' && !dev.has('subgroups')) return '; no subgroups here: ran as rows';
  return '';
}

// ---- TensorFlow.js WebGPU, on its own Dawn instance over the same adapter ----

interface TfjsResult {
  rows: Row[];
  gflops: Map<string, number>;
}

// The Dawn instance handed to tfjs must stay referenced while tfjs uses it.
let tfjsGpu: GPU | null = null;

interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  randomUniform(shape: number[]): TfTensor;
  matMul(a: TfTensor, b: TfTensor, transposeA?: boolean, transposeB?: boolean): TfTensor;
}
interface TfTensor {
  data(): Promise<unknown>;
  dispose(): void;
}

async function loadTfjs(): Promise<Tf> {
  // Names through variables: the bundle keeps them external, so a missing install is a row note.
  const core = '@tensorflow/tfjs-core';
  const webgpuBackend = '@tensorflow/tfjs-backend-webgpu';
  const dawnName = 'webgpu';
  const dawn = (await import(dawnName)) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
  Object.assign(globalThis, dawn.globals);
  tfjsGpu = dawn.create([]);
  const gpu = tfjsGpu;
  // Dawn's adapters have `info` but not the older requestAdapterInfo() that tfjs calls.
  const shim = {
    requestAdapter: async (o?: GPURequestAdapterOptions) => {
      const adapter = await gpu.requestAdapter(o);
      if (!adapter) return null;
      return new Proxy(adapter, {
        get(target, prop) {
          if (prop === 'requestAdapterInfo') return async () => target.info;
          const v = Reflect.get(target, prop, target) as unknown;
          return typeof v === 'function' ? (v as (...args: unknown[]) => unknown).bind(target) : v;
        },
      });
    },
    getPreferredCanvasFormat: () => 'rgba8unorm',
    wgslLanguageFeatures: gpu.wgslLanguageFeatures,
  };
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: shim }, configurable: true, writable: true });
  const tf = (await import(core)) as unknown as Tf;
  await import(webgpuBackend);
  if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") failed');
  await tf.ready();
  return tf;
}

async function tfjsRows(list: Shape[], software: boolean): Promise<TfjsResult> {
  const rows: Row[] = [];
  const gflops = new Map<string, number>();
  let tf: Tf;
  try {
    tf = await loadTfjs();
  } catch (e) {
    const reason = String((e as Error).message ?? e).split('\n')[0];
    for (const s of list) rows.push({ suite: 'kernels', name: 'tfjs-webgpu tf.matMul', shape: s.label, metric: 'throughput', value: NaN, unit: 'GFLOP/s', note: `missing: ${reason}` });
    return { rows, gflops };
  }
  for (const s of list) {
    const a = tf.randomUniform([s.M, s.K]);
    const b = tf.randomUniform(s.transB ? [s.N, s.K] : [s.K, s.N]);
    // Reading back the result is the portable wait for tfjs' queue; it adds one M×N copy per run.
    const once = async () => {
      const c = tf.matMul(a, b, false, s.transB);
      await c.data();
      c.dispose();
    };
    await once();
    const cpu0 = process.cpuUsage();
    const times: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      await once();
      times.push((performance.now() - t0) / 1000);
    }
    const cpu = process.cpuUsage(cpu0);
    times.sort((x, y) => x - y);
    const sec = times[1]!;
    gflops.set(s.label, flops(s) / sec / 1e9);
    rows.push({ suite: 'kernels', name: 'tfjs-webgpu tf.matMul', shape: s.label, metric: 'throughput', value: flops(s) / sec / 1e9, unit: 'GFLOP/s', note: `${(sec * 1e3).toFixed(1)} ms incl. read-back${software ? `; ${cpuNote(s, cpu, 3)}` : ''}` });
    a.dispose();
    b.dispose();
  }
  return { rows, gflops };
}
