// Timing on the GPU: warm-up first (the first dispatch of a pipeline includes the driver's
// compile), then repeats of `inner` calls each; the median wins. With 'timestamp-query' the GPU's
// own timestamps bracket the work (no submit or read-back latency in the number); otherwise the
// wall clock from the first recorded call to completion.
import type { Device, KernelTime, Profile } from '@mpfgvc/kernels';
import type { Row } from './report.js';

export interface TimingOptions {
  warmup?: number;
  repeats?: number;
  /** Calls of `fn` per timed submit, so that launch overhead is spread. */
  inner?: number;
  /** Use the wall clock even where GPU timestamps exist (for end-to-end timings that include the host). */
  wallClock?: boolean;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const querySets = new WeakMap<Device, GPUQuerySet>();

function querySet(dev: Device): GPUQuerySet | undefined {
  if (!dev.has('timestamp-query')) return undefined;
  let qs = querySets.get(dev);
  if (!qs) {
    qs = dev.gpu.createQuerySet({ type: 'timestamp', count: 2, label: 'bench' });
    querySets.set(dev, qs);
  }
  return qs;
}

/** Median seconds per call of `fn`, which records GPU work on `dev`. */
export async function timeGpu(dev: Device, fn: () => void, opts: TimingOptions = {}): Promise<number> {
  const { warmup = 2, repeats = 5, inner = 1 } = opts;
  for (let i = 0; i < warmup; i++) {
    fn();
    await dev.sync();
  }
  let qs = opts.wallClock ? undefined : querySet(dev);
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    if (qs) {
      dev.timestamp(qs, 0);
      for (let i = 0; i < inner; i++) fn();
      dev.timestamp(qs, 1);
      const [t0, t1] = await dev.readTimestamps(qs, 2);
      const ns = Number(t1! - t0!);
      // Timestamps are quantised (Dawn coarsens them; software drivers tick slowly): spans under
      // a millisecond are timed by the wall clock instead.
      if (ns >= 1e6) {
        times.push(ns / 1e9 / inner);
        continue;
      }
      qs = undefined;
    }
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    await dev.sync();
    times.push((performance.now() - t0) / 1000 / inner);
  }
  return median(times);
}

/** What one step costs the host and the GPU: recorded work, buffers made, and where the time goes. */
export interface StepCost {
  dispatches: number;
  submits: number;
  /** GPU buffers created during the step (after warm-up: staging and anything the pool could not reuse). */
  buffers: number;
  bufferBytes: number;
  /** Wall time of recording the step on the host (JavaScript, encoding, bind groups). */
  hostMs: number;
  /** GPU time of the step from timestamps (NaN where the adapter has no timestamp queries). */
  gpuMs: number;
}

/** The cost of one call of `fn` (warmed up by the caller), from the device's counters and timestamps. */
export async function stepCost(dev: Device, fn: () => void): Promise<StepCost> {
  await dev.sync();
  const qs = querySet(dev);
  const before = { ...dev.counts };
  if (qs) dev.timestamp(qs, 0);
  const t0 = performance.now();
  fn();
  const hostMs = performance.now() - t0;
  if (qs) dev.timestamp(qs, 1);
  const after = { ...dev.counts };
  let gpuMs = NaN;
  if (qs) {
    const [a, b] = await dev.readTimestamps(qs, 2);
    gpuMs = Number(b! - a!) / 1e6;
  }
  await dev.sync();
  return {
    dispatches: after.dispatches - before.dispatches,
    // What the step submitted itself, and the flush that submits what it recorded.
    submits: after.submits - before.submits + 1,
    buffers: after.buffers - before.buffers,
    bufferBytes: after.bufferBytes - before.bufferBytes,
    hostMs,
    gpuMs,
  };
}

export function costRows(suite: string, name: string, shape: string, c: StepCost): Row[] {
  return [
    { suite, name, shape, metric: 'dispatches', value: c.dispatches, unit: 'per step', note: `${c.submits} submit(s)` },
    { suite, name, shape, metric: 'buffers created', value: c.bufferBytes / 1024, unit: 'KiB per step', note: `${c.buffers} buffers (staging and pool misses after warm-up)` },
    { suite, name, shape, metric: 'host encode', value: c.hostMs, unit: 'ms per step', note: 'recording the step: JavaScript, bind groups, encoding' },
    {
      suite,
      name,
      shape,
      metric: 'GPU time',
      value: c.gpuMs,
      unit: 'ms per step',
      note: Number.isFinite(c.gpuMs) ? 'between timestamps around the step' : 'missing: no timestamp queries on this adapter',
    },
  ];
}

/** Kernels (by name, over their variants) that take the most of a profiled step's GPU time. */
export function profileRows(suite: string, name: string, shape: string, p: Profile, top = 5): Row[] {
  const byName = new Map<string, { ms: number; dispatches: number; variants: KernelTime[] }>();
  for (const k of p.kernels) {
    const kernel = k.kernel.split(/[:@[]/)[0]!;
    const e = byName.get(kernel) ?? { ms: 0, dispatches: 0, variants: [] };
    e.ms += k.ms;
    e.dispatches += k.dispatches;
    e.variants.push(k);
    byName.set(kernel, e);
  }
  return [...byName.entries()]
    .sort((a, b) => b[1].ms - a[1].ms)
    .slice(0, top)
    .map(([kernel, e]) => ({
      suite,
      name: `${name}: ${kernel}`,
      shape,
      metric: 'GPU time (profiled)',
      value: e.ms,
      unit: 'ms per step',
      note:
        `${((100 * e.ms) / p.totalMs).toFixed(0)}% of ${p.totalMs.toFixed(1)} ms over ${e.dispatches} dispatches, each timed alone; ` +
        `slowest variant ${e.variants[0]!.kernel} ${e.variants[0]!.ms.toFixed(1)} ms${p.untimed ? `; ${p.untimed} dispatches past the profiler's capacity not timed` : ''}`,
    }));
}
