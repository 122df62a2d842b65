// One fuzz campaign per target, run in a worker thread watched by the main thread: the worker
// publishes the input it is on in shared memory, so the main thread can stop it when one input
// runs longer than the time limit or grows the process by more than the memory limit, record that
// input, and start a new worker after it. Counters live in the same shared memory and survive the
// restarts; exceptions of a kind the target does not allow come back as findings.
import { Worker } from 'node:worker_threads';
import type { Seeds, Target } from './targets.js';

export interface Limits {
  /** An input running longer than this is a hang. */
  timeMs: number;
  /** An input growing the process's resident memory by more than this is a violation. */
  memoryBytes: number;
}

export interface Finding {
  index: number;
  kind: 'foreign' | 'hang' | 'memory' | 'crash';
  /** The exception's name and message, or what the watchdog saw. */
  detail: string;
}

export interface CampaignResult {
  target: string;
  seed: number;
  from: number;
  inputs: number;
  accepted: number;
  rejected: Record<string, number>;
  foreign: number;
  hangs: number;
  memory: number;
  crashes: number;
  /** The slowest input that finished: its index and milliseconds. */
  slowest: { index: number; ms: number };
  findings: Finding[];
  seconds: number;
}

/** Shared counters: [current input (-1 idle), accepted, foreign, then one per allowed error kind]. */
export const COUNTERS = { current: 0, accepted: 1, foreign: 2, firstKind: 3 } as const;
/** Shared times: [start of the current input (ms since the epoch), slowest ms, slowest index]. */
export const TIMES = { started: 0, slowestMs: 1, slowestIndex: 2 } as const;

export interface WorkerInput {
  target: string;
  seeds: Seeds;
  seed: number;
  from: number;
  to: number;
  counters: SharedArrayBuffer;
  times: SharedArrayBuffer;
}

export type WorkerMessage = { ready: true } | { finding: Finding };

const MAX_FINDINGS = 20;

export async function runCampaign(target: Target, seeds: Seeds, opts: { seed: number; from: number; count: number; limits: Limits; entry: URL }): Promise<CampaignResult> {
  const started = performance.now();
  const counters = new Int32Array(new SharedArrayBuffer(4 * (COUNTERS.firstKind + target.allowed.length)));
  const times = new Float64Array(new SharedArrayBuffer(8 * 3));
  times[TIMES.slowestIndex] = -1;
  const findings: Finding[] = [];
  const tally = { hangs: 0, memory: 0, crashes: 0 };
  const record = (f: Finding) => {
    if (f.kind === 'hang') tally.hangs++;
    else if (f.kind === 'memory') tally.memory++;
    else if (f.kind === 'crash') tally.crashes++;
    if (findings.length < MAX_FINDINGS) findings.push(f);
  };
  const end = opts.from + opts.count;
  let from = opts.from;
  while (from < end) {
    from = await runWorker(from);
  }
  return {
    target: target.name,
    seed: opts.seed,
    from: opts.from,
    inputs: opts.count,
    accepted: counters[COUNTERS.accepted]!,
    rejected: Object.fromEntries(target.allowed.map((k, i) => [k, counters[COUNTERS.firstKind + i]!]).filter(([, n]) => (n as number) > 0)),
    foreign: counters[COUNTERS.foreign]!,
    ...tally,
    slowest: { index: times[TIMES.slowestIndex]!, ms: times[TIMES.slowestMs]! },
    findings,
    seconds: (performance.now() - started) / 1000,
  };

  /** Runs inputs [start, end) in a fresh worker; returns where the next worker starts. */
  function runWorker(start: number): Promise<number> {
    counters[COUNTERS.current] = -1;
    const input: WorkerInput = { target: target.name, seeds, seed: opts.seed, from: start, to: end, counters: counters.buffer as SharedArrayBuffer, times: times.buffer as SharedArrayBuffer };
    // The heap limit turns a runaway JavaScript allocation into a worker error instead of taking the process down.
    const heapMb = Math.max(256, Math.ceil(opts.limits.memoryBytes / 2 ** 20));
    const worker = new Worker(opts.entry, { workerData: input, resourceLimits: { maxOldGenerationSizeMb: heapMb } });
    return new Promise((resolve) => {
      let baseline = Infinity;
      let settled = false;
      const stopAt = (kind: Finding['kind'], detail: string) => {
        if (settled) return;
        settled = true;
        clearInterval(watch);
        const index = counters[COUNTERS.current]!;
        const at = index >= 0 ? index : start;
        record({ index: at, kind, detail });
        void worker.terminate().then(() => resolve(at + 1));
      };
      const watch = setInterval(() => {
        const index = counters[COUNTERS.current]!;
        if (index < 0) return;
        const elapsed = Date.now() - times[TIMES.started]!;
        if (elapsed > opts.limits.timeMs) stopAt('hang', `still running after ${(elapsed / 1000).toFixed(1)} s`);
        const grown = process.memoryUsage.rss() - baseline;
        if (grown > opts.limits.memoryBytes) stopAt('memory', `resident memory grew by ${(grown / 2 ** 20).toFixed(0)} MiB`);
      }, 20);
      worker.on('message', (m: WorkerMessage) => {
        if ('ready' in m) baseline = process.memoryUsage.rss();
        else record(m.finding);
      });
      worker.on('error', (e) => {
        const oom = (e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
        stopAt(oom ? 'memory' : 'crash', `${e.name}: ${e.message}`);
      });
      worker.on('exit', () => {
        if (settled) return;
        settled = true;
        clearInterval(watch);
        resolve(end);
      });
    });
  }
}
