// Peers measured in the same run on the same machine: matmul here and in tfjs and jax-js on the same
// adapter (peers-matmul.ts), and a ViT training step (forward, backward, AdamW) here on WebGPU and
// in PyTorch on the CPU, same shapes. A peer that cannot run is a row with a 'missing: …' note, not
// a failure.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AdamW, type Device, Rng, backward, crossEntropy, linear, tensor } from '@mpfgvc/kernels';
import { VisionTransformer, type ViTConfig } from '@mpfgvc/model';
import { timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import { CONFIGS } from './model.js';
import type { SuiteOptions } from './options.js';
import { peerMatmulRows } from './peers-matmul.js';

const PYTHON = '/usr/bin/python3';
const OPENBLAS_OPENMP = '/usr/lib/x86_64-linux-gnu/openblas-openmp';
const CLASSES = 200;

function script(): string | undefined {
  // From the bundle (dist/bench.js) and from the sources (src/suites/peers.ts) alike.
  for (const rel of ['../scripts/torch_peer.py', '../../scripts/torch_peer.py']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

async function ours(dev: Device, vision: ViTConfig, batch: number, repeats: number): Promise<number> {
  const rng = new Rng(1);
  const vit = new VisionTransformer(dev, rng, vision);
  const headW = tensor(dev, rng.normal(CLASSES * vision.width, 0.01), [CLASSES, vision.width], { requiresGrad: true });
  const headB = tensor(dev, new Float32Array(CLASSES), [CLASSES], { requiresGrad: true });
  const opt = new AdamW([...vit.parameters(), headW, headB], { lr: 1e-4 });
  const s = vision.imageSize;
  const images = tensor(dev, rng.normal(batch * 3 * s * s), [batch, 3, s, s]);
  const labels = Int32Array.from({ length: batch }, (_, i) => i % CLASSES);
  const step = () => {
    const loss = crossEntropy(linear(vit.forward(images, { ssvpK: null }).embedding, headW, headB), labels);
    backward(loss);
    opt.step();
    opt.zeroGrad();
    loss.dispose();
  };
  const sec = await timeGpu(dev, step, { warmup: 1, repeats, wallClock: true });
  opt.dispose();
  vit.dispose();
  for (const t of [headW, headB, images]) t.dispose();
  dev.trim();
  return batch / sec;
}

/**
 * Timed steps per side (the median wins): a tiny step takes tens of milliseconds and varies by a
 * third from one step to the next on a busy 2-core machine, so it takes many; a vit-tiny-224
 * step takes seconds.
 */
const STEPS: Record<string, number> = { tiny: 25, 'vit-tiny-224': 5 };

/** Below this a PyTorch peer's matmul runs on a reference BLAS, not a real one: no ratio is reported against it. */
const PEER_MATMUL_FLOOR = 20;

function run(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 2, 2], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return r.status === 0;
}

/**
 * Sets the PyTorch peer up as scripts/setup.mjs sets the driver up: on Debian/Ubuntu as root,
 * Debian's python3-torch where torch is missing and libopenblas0-openmp where the OpenMP OpenBLAS
 * is (Debian's torch otherwise runs on the reference BLAS, ~6 GFLOP/s). Elsewhere it only reports.
 */
function setUpTorchPeer(): void {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) return;
  const hasTorch = existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  const pkgs = [...(hasTorch ? [] : ['python3-torch']), ...(existsSync(OPENBLAS_OPENMP) ? [] : ['libopenblas0-openmp'])];
  if (pkgs.length === 0) return;
  process.stderr.write(`[bench] installing the PyTorch peer's ${pkgs.join(', ')}\n`);
  if (!run('apt-get', ['install', '-y', '-qq', ...pkgs])) run('apt-get', ['update', '-qq']) && run('apt-get', ['install', '-y', '-qq', ...pkgs]);
}

interface PeerResult {
  value: number;
  note: string;
  /** The peer runs on a real BLAS (its matmul is above the floor): ratios against it mean something. */
  sound: boolean;
}

function torchPeer(vision: ViTConfig, batch: number, steps: number): PeerResult {
  const path = script();
  if (!existsSync(PYTHON)) return { value: NaN, note: `missing: no ${PYTHON}`, sound: false };
  if (!path) return { value: NaN, note: 'missing: torch_peer.py not found beside the bench', sound: false };
  const cfg = { imageSize: vision.imageSize, patchSize: vision.patchSize, width: vision.width, depth: vision.depth, heads: vision.heads, mlpRatio: vision.mlpRatio, classes: CLASSES, batch, steps };
  const env = { ...process.env, OMP_NUM_THREADS: '2', ...(existsSync(OPENBLAS_OPENMP) ? { LD_LIBRARY_PATH: OPENBLAS_OPENMP } : {}) };
  const r = spawnSync(PYTHON, [path, JSON.stringify(cfg)], { encoding: 'utf8', env, timeout: 600_000 });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').pop();
    return { value: NaN, note: `missing: ${why}`, sound: false };
  }
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { imagesPerSec: number; threads: number; torch: string; blas: string; matmulGflops: number };
  const blas = out.blas.split(', ').map((p) => p.split('/').pop()).join(' + ');
  const sound = out.matmulGflops >= PEER_MATMUL_FLOOR;
  const what = `PyTorch ${out.torch} CPU, ${out.threads} threads, BLAS ${blas}: matmul 1024³ ${out.matmulGflops.toFixed(0)} GFLOP/s`;
  return { value: out.imagesPerSec, note: sound ? what : `degraded: ${what}, below the ${PEER_MATMUL_FLOOR} GFLOP/s of a real BLAS (install libopenblas0-openmp)`, sound };
}

export async function peersSuite(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  // Installing packages takes minutes: only for a real measurement, not the toy-size check.
  if (!opts.quick) setUpTorchPeer();
  // The training steps first: the matmul peers leave their libraries' devices, buffers and caches
  // in this process, and a vit-tiny-224 step measured after them ran ~8% slower.
  const rows: Row[] = [];
  const configs = opts.quick ? [{ ...CONFIGS.tiny!, batch: 2 }] : [CONFIGS.tiny!, CONFIGS['vit-tiny-224']!];
  for (const cfg of configs) {
    const v = cfg.model.vision;
    const shape = `ViT ${v.imageSize}² patch ${v.patchSize} width ${v.width} depth ${v.depth}, B=${cfg.batch}, C=${CLASSES}`;
    const steps = opts.quick ? 1 : (STEPS[cfg.name] ?? 3);
    const mine = await ours(dev, v, cfg.batch, steps);
    const peer = torchPeer(v, cfg.batch, steps);
    rows.push({ suite: 'peers', name: `${cfg.name} ViT training step, WebGPU (ours)`, shape, metric: 'throughput', value: mine, unit: 'images/s', note: `${dev.info.name}, median of ${steps} steps` });
    rows.push({ suite: 'peers', name: `${cfg.name} ViT training step, PyTorch`, shape, metric: 'throughput', value: peer.value, unit: 'images/s', note: Number.isFinite(peer.value) ? `${peer.note}, median of ${steps} steps` : peer.note });
    rows.push({
      suite: 'peers',
      name: `${cfg.name} ours / PyTorch`,
      shape,
      metric: 'ratio',
      value: peer.sound ? mine / peer.value : NaN,
      unit: '×',
      ...(peer.sound ? {} : { note: Number.isFinite(peer.value) ? 'missing: no ratio against a degraded peer' : 'missing: PyTorch did not run' }),
    });
  }
  return [...(await peerMatmulRows(dev, opts)), ...rows];
}
