// Gathers, patch extraction and optimiser updates: memory-bound kernels, reported as achieved
// GB/s over the bytes each must move (compare with the bandwidth ceiling row).
import { AdamW, type Device, SGD, type Tensor, clipGradNorm, empty, scope, tensor } from '@mpfgvc/kernels';
import { launchCol2im, launchFill, launchGatherRows, launchIm2col, launchScatterAddRows } from '@mpfgvc/kernels/raw';
import { timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import type { SuiteOptions } from './options.js';

function row(name: string, shape: string, bytes: number, sec: number, note?: string): Row {
  return { suite: 'kernels', name, shape, metric: 'bandwidth', value: bytes / sec / 1e9, unit: 'GB/s', note: note ?? `${(sec * 1e3).toFixed(2)} ms` };
}

function randomIds(dev: Device, n: number, hi: number, shape: number[]): Tensor {
  const ids = new Int32Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    ids[i] = x % hi;
  }
  return tensor(dev, ids, shape);
}

async function gatherRowsBench(dev: Device, opts: SuiteOptions): Promise<Row[]> {
  const repeats = opts.quick ? 1 : 5;
  const rows: Row[] = [];
  // CLIP token embedding: 200 prompts of ~20 tokens into a 49408 × 512 table.
  const [v, d, k] = opts.quick ? [97, 8, 40] : [49408, 512, 20 * 200];
  const table = empty(dev, [1, v, d]);
  launchFill(table, 0.5);
  const ids = randomIds(dev, k, v, [1, k]);
  const g = empty(dev, [1, k, d]);
  launchFill(g, 1);
  const shape = `table [${v}, ${d}], ${k} ids`;
  const fwd = await timeGpu(dev, () => scope(() => void launchGatherRows(table, ids)), { repeats });
  rows.push(row('embedding forward', shape, 2 * k * d * 4, fwd));
  const bwd = await timeGpu(dev, () => scope(() => void launchScatterAddRows(g, ids, v)), { repeats });
  rows.push(row('embedding backward (sorted scatter-add)', shape, (v * d + k * d) * 4, bwd));
  // SsVP: K = 12 of 785 tokens per image, ViT-B width.
  const [b, n, w, kk] = opts.quick ? [2, 9, 8, 3] : [32, 785, 768, 12];
  const x = empty(dev, [b, n, w]);
  launchFill(x, 0.5);
  const sel = randomIds(dev, b * kk, n, [b, kk]);
  const gs = empty(dev, [b, kk, w]);
  launchFill(gs, 1);
  const sshape = `x [${b}, ${n}, ${w}], idx [${b}, ${kk}]`;
  const sbwd = await timeGpu(dev, () => scope(() => void launchScatterAddRows(gs, sel, n)), { repeats });
  rows.push(row('gatherRows backward (SsVP)', sshape, (b * n * w + b * kk * w) * 4, sbwd));
  for (const t of [table, ids, g, x, sel, gs]) t.dispose();
  return rows;
}

async function patchBench(dev: Device, opts: SuiteOptions): Promise<Row[]> {
  const repeats = opts.quick ? 1 : 5;
  const [b, c, hw, p] = opts.quick ? [1, 3, 32, 16] : [4, 3, 448, 16];
  const img = empty(dev, [b, c, hw, hw]);
  launchFill(img, 0.5);
  const shape = `[${b}, ${c}, ${hw}, ${hw}], patch ${p}`;
  const bytes = 2 * img.size * 4;
  const fwd = await timeGpu(dev, () => scope(() => void launchIm2col(img, p)), { repeats });
  const cols = launchIm2col(img, p);
  const bwd = await timeGpu(dev, () => scope(() => void launchCol2im(cols, img.shape, p)), { repeats });
  img.dispose();
  cols.dispose();
  return [row('im2col', shape, bytes, fwd), row('col2im', shape, bytes, bwd)];
}

async function optimBench(dev: Device, opts: SuiteOptions): Promise<Row[]> {
  const repeats = opts.quick ? 1 : 5;
  // 8M parameters in 16 tensors: ViT-B's 86M would not fit this machine's timing budget.
  const count = 16;
  const per = opts.quick ? 1000 : (8 * 1024 * 1024) / count;
  const n = per * count;
  const params = Array.from({ length: count }, (_, i) => {
    const t = empty(dev, [per], 'f32', `p${i}`);
    launchFill(t, 0.1);
    t.grad = empty(dev, [per], 'f32', `g${i}`);
    launchFill(t.grad, 0.01);
    return t;
  });
  const shape = `${n} params in ${count} tensors`;
  const adamw = new AdamW(params, { lr: 1e-4 });
  const adamwSec = await timeGpu(dev, () => adamw.step(), { repeats });
  const sgd = new SGD(params, { lr: 1e-4, momentum: 0.9, nesterov: true, weightDecay: 1e-4 });
  const sgdSec = await timeGpu(dev, () => sgd.step(), { repeats });
  const clipSec = await timeGpu(dev, () => scope(() => void clipGradNorm(params, 1e9)), { repeats });
  adamw.dispose();
  sgd.dispose();
  for (const t of params) t.dispose();
  return [
    // p, g, m, v read; p, m, v written.
    row('AdamW step (fused)', shape, 7 * 4 * n, adamwSec),
    // p, g, buf read; p, buf written.
    row('SGD nesterov step (fused)', shape, 5 * 4 * n, sgdSec),
    // Norm pass reads g; scale pass reads and writes g.
    row('clipGradNorm (no read-back)', shape, 3 * 4 * n, clipSec),
  ];
}

export async function miscRows(dev: Device, opts: SuiteOptions): Promise<Row[]> {
  return [...(await gatherRowsBench(dev, opts)), ...(await patchBench(dev, opts)), ...(await optimBench(dev, opts))];
}
