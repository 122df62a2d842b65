// Timing on the GPU: warm-up first (the first dispatch of a pipeline includes the driver's
// compile), then repeats of `inner` calls each, timed from submit to completion; the median wins.
import type { Device } from '@mpfgvc/kernels';

export interface TimingOptions {
  warmup?: number;
  repeats?: number;
  /** Calls of `fn` per timed submit, so that launch overhead is spread. */
  inner?: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median seconds per call of `fn`, which records GPU work on `dev`. */
export async function timeGpu(dev: Device, fn: () => void, opts: TimingOptions = {}): Promise<number> {
  const { warmup = 2, repeats = 5, inner = 1 } = opts;
  for (let i = 0; i < warmup; i++) {
    fn();
    await dev.sync();
  }
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    await dev.sync();
    times.push((performance.now() - t0) / 1000 / inner);
  }
  return median(times);
}
