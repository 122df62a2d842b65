// Matmul here and in the WebGPU libraries that run in Node — TensorFlow.js (tfjs-backend-webgpu)
// and jax-js — on the adapter our Device uses, at the kernels suite's shapes. Each peer gets the
// same inputs, its result is checked against float64 at sampled entries, and it is timed from the
// call to its queue's completion (no read-back). A peer that cannot run is a 'missing: …' row.
import { type Device, Rng, WaitPacer, dawnInstance, defaultKernel } from '@mpfgvc/kernels';
import { median } from '../measure.js';
import type { Row } from '../report.js';
import { type MatmulShape, cpuNote, defaultMatmulTiming, flops, matmulShapes } from './kernels-matmul.js';
import type { SuiteOptions } from './options.js';

/** The pacer's signature of a peer's submit: every run of a shape is the same matmul (wait.ts). */
const SAME_MATMUL = 0;

/** One peer's matmul at one shape, inputs uploaded. */
interface Prepared {
  /** Runs C = A·B (or A·Bᵀ) and resolves when the GPU has finished it, waiting as `pacer` paces. */
  run(pacer: WaitPacer): Promise<void>;
  /** Runs once more and reads C back (row-major M×N). */
  result(): Promise<Float32Array>;
  dispose(): void;
}

interface Peer {
  /** Row name: library and call. */
  name: string;
  /** Library, for ratio rows. */
  short: string;
  /** How a run is waited for, for the row's note. */
  wait: string;
  load(): Promise<(s: MatmulShape, a: Float32Array, b: Float32Array) => Promise<Prepared>>;
}

// Both libraries find WebGPU at navigator.gpu (absent in Node): one Dawn instance over our adapter,
// which the global keeps referenced for as long as they use it. jax-js also reads navigator.userAgent.
let navigatorReady: Promise<void> | undefined;

function installNavigator(dev: Device): Promise<void> {
  navigatorReady ??= dawnInstance(dev.info).then((gpu) => {
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
    const nav = { gpu: shim, userAgent: `Node.js/${process.versions.node}` };
    Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
  });
  return navigatorReady;
}

const TFJS: Peer = {
  name: 'tfjs-webgpu tf.matMul',
  short: 'tfjs-webgpu',
  wait: 'waits for the submitted queue',
  async load() {
    // Through the Node builds' files, declared in tfjs-node.d.ts; the backend's build imports the same core.
    const tf = await import('@tensorflow/tfjs-core/dist/tf-core.node.js');
    await import('@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.node.js');
    if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend("webgpu") failed');
    await tf.ready();
    // tfjs records into a command encoder of its own and submits it in batches: end its pass and
    // submit what is recorded, as tfjs does before a read, then wait for the queue.
    const backend = tf.backend() as { commandEncoder: GPUCommandEncoder | null; endComputePassEncoder(): void; submitQueue(): void; device: GPUDevice };
    const submit = () => {
      if (!backend.commandEncoder) return;
      backend.endComputePassEncoder();
      backend.submitQueue();
    };
    return async (s, a, b) => {
      const ta = tf.tensor2d(a, [s.M, s.K]);
      const tb = tf.tensor2d(b, s.transB ? [s.N, s.K] : [s.K, s.N]);
      return {
        async run(pacer) {
          const c = tf.matMul(ta, tb, false, s.transB);
          submit();
          pacer.submitted(SAME_MATMUL);
          await pacer.wait(() => backend.device.queue.onSubmittedWorkDone());
          c.dispose();
        },
        async result() {
          const c = tf.matMul(ta, tb, false, s.transB);
          const out = (await c.data()) as Float32Array;
          c.dispose();
          return out;
        },
        dispose() {
          ta.dispose();
          tb.dispose();
        },
      };
    };
  },
};

const JAX: Peer = {
  name: 'jax-js np.matmul',
  short: 'jax-js',
  wait: 'waits with blockUntilReady()',
  async load() {
    const jax = await import('@jax-js/jax');
    if (!(await jax.init('webgpu')).includes('webgpu')) throw new Error("jax-js init('webgpu') found no WebGPU adapter");
    const np = jax.numpy;
    return async (s, a, b) => {
      const ja = np.array(a, { shape: [s.M, s.K], device: 'webgpu' });
      const jb = np.array(b, { shape: s.transB ? [s.N, s.K] : [s.K, s.N], device: 'webgpu' });
      await jax.blockUntilReady([ja, jb]);
      // jax-js arrays are consumed by every call they are passed to: `.ref` keeps the inputs alive.
      const matmul = () => np.matmul(ja.ref, s.transB ? jb.ref.transpose() : jb.ref);
      return {
        async run(pacer) {
          const c = matmul();
          pacer.submitted(SAME_MATMUL);
          await pacer.wait(() => c.blockUntilReady());
          c.dispose();
        },
        async result() {
          return (await matmul().data()) as Float32Array;
        },
        dispose() {
          ja.dispose();
          jb.dispose();
        },
      };
    };
  },
};

const loaded = new Map<Peer, ReturnType<Peer['load']>>();

/** The first line of why a peer failed, for its row's note. */
const reason = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0];

/** Entries of C compared with float64 dot products (corners and a few inside); null when all agree. */
function mismatch(s: MatmulShape, a: Float32Array, b: Float32Array, c: Float32Array): string | null {
  const picks: [number, number][] = [[0, 0], [s.M - 1, s.N - 1], [s.M >> 1, s.N >> 2], [s.M >> 2, s.N - 1], [s.M - 1, 0]];
  for (const [i, j] of picks) {
    let want = 0;
    for (let k = 0; k < s.K; k++) want += a[i * s.K + k]! * b[s.transB ? j * s.K + k : k * s.N + j]!;
    const got = c[i * s.N + j]!;
    if (!(Math.abs(got - want) <= 1e-3 + 1e-3 * Math.abs(want))) return `C[${i},${j}] = ${got}, float64 ${want.toFixed(4)}`;
  }
  return null;
}

async function peerRows(dev: Device, peer: Peer, list: MatmulShape[], inputs: Map<string, [Float32Array, Float32Array]>, repeats: number): Promise<Map<string, Row>> {
  const rows = new Map<string, Row>();
  const row = (s: MatmulShape, value: number, note: string): Row => ({ suite: 'peers', name: `matmul, ${peer.name}`, shape: s.label, metric: 'throughput', value, unit: 'GFLOP/s', note });
  let prepare: Awaited<ReturnType<Peer['load']>>;
  try {
    if (!loaded.has(peer)) loaded.set(peer, installNavigator(dev).then(() => peer.load()));
    prepare = await loaded.get(peer)!;
  } catch (e) {
    for (const s of list) rows.set(s.label, row(s, NaN, `missing: ${reason(e)}`));
    return rows;
  }
  for (const s of list) {
    const [a, b] = inputs.get(s.label)!;
    try {
      const p = await prepare(s, a, b);
      // The checked run is also the warm-up: it includes the peer's shader compile.
      const wrong = mismatch(s, a, b, await p.result());
      if (wrong) {
        rows.set(s.label, row(s, NaN, `missing: wrong result, ${wrong}`));
        p.dispose();
        continue;
      }
      const cpu0 = process.cpuUsage();
      const times: number[] = [];
      // The peer's wait paced as ours is (the kernels' wait.ts), so that the rows compare kernels,
      // not how the harness waits for them.
      const pacer = new WaitPacer(dev.sleepWhileWaiting);
      for (let r = 0; r < repeats; r++) {
        const t0 = performance.now();
        await p.run(pacer);
        times.push((performance.now() - t0) / 1000);
      }
      const cpu = process.cpuUsage(cpu0);
      p.dispose();
      const sec = median(times);
      rows.set(s.label, row(s, flops(s) / sec / 1e9, `${(sec * 1e3).toFixed(1)} ms, ${peer.wait}${dev.info.isFallback ? `; ${cpuNote(s, cpu, repeats)}` : ''}`));
    } catch (e) {
      rows.set(s.label, row(s, NaN, `missing: ${reason(e)}`));
    }
  }
  return rows;
}

export async function peerMatmulRows(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const quick = Boolean(opts.quick);
  const list = matmulShapes(quick);
  const rng = new Rng(5);
  const inputs = new Map(list.map((s) => [s.label, [rng.uniform(s.M * s.K), rng.uniform(s.K * s.N)] as [Float32Array, Float32Array]]));
  const kernel = defaultKernel(dev);
  const peers = [TFJS, JAX];
  const theirs: Map<string, Row>[] = [];
  for (const peer of peers) theirs.push(await peerRows(dev, peer, list, inputs, quick ? 1 : 3));
  const rows: Row[] = [];
  for (const s of list) {
    const t = await defaultMatmulTiming(dev, s, quick);
    const mine = flops(s) / t.sec / 1e9;
    rows.push({ suite: 'peers', name: `matmul, WebGPU (ours, ${kernel})`, shape: s.label, metric: 'throughput', value: mine, unit: 'GFLOP/s', note: t.note });
    peers.forEach((peer, i) => {
      const r = theirs[i]!.get(s.label)!;
      rows.push(r, {
        suite: 'peers',
        name: `matmul ours / ${peer.short}`,
        shape: s.label,
        metric: 'ratio',
        value: mine / r.value,
        unit: '×',
        ...(Number.isFinite(r.value) ? {} : { note: `missing: ${peer.short} did not run` }),
      });
    });
  }
  return rows;
}
