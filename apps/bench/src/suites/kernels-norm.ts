// Row-wise kernels at ViT-B/16@448 shapes: LayerNorm over the 16·785 token rows of a batch, softmax
// over one image's attention rows (12 heads × 785 queries × 785 keys; a whole batch would not fit
// a few seconds on a software adapter), L2 normalisation, and cross-entropy at CUB's C = 200.
// Bandwidth counts one read of each input and one write of each output per kernel launched.
import { type Device, type Tensor, scope, tensor } from '@mpfgvc/kernels';
import {
  launchCrossEntropy,
  launchCrossEntropyBackward,
  launchL2Normalize,
  launchL2NormalizeBackward,
  launchLayerNorm,
  launchLayerNormBackward,
  launchSoftmax,
  launchSoftmaxBackward,
} from '@mpfgvc/kernels/raw';
import { Rng } from '@mpfgvc/kernels/testing';
import { timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import type { SuiteOptions } from './options.js';

const GB = 1e9;

export async function normRows(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rng = new Rng(1);
  const repeats = opts.quick ? 1 : 5;
  const time = (fn: () => void) => timeGpu(dev, () => scope(fn), { repeats });
  const rows: Row[] = [];
  const bw = (name: string, shape: number[], bytes: number, sec: number, note?: string) =>
    rows.push({
      suite: 'kernels',
      name,
      shape: `[${shape.join(', ')}]`,
      metric: 'bandwidth',
      value: bytes / sec / GB,
      unit: 'GB/s',
      note: `${(sec * 1e3).toFixed(2)} ms${note ? `; ${note}` : ''}`,
    });
  const owned: Tensor[] = [];
  const make = (shape: number[], lo = -2, hi = 2) => {
    const t = tensor(dev, rng.uniform(shape.reduce((a, b) => a * b, 1), lo, hi), shape);
    owned.push(t);
    return t;
  };

  const [r, d] = opts.quick ? [16, 64] : [16 * 785, 768];
  const x = make([r, d]);
  const g = make([r, d]);
  const w = make([d], 0.5, 1.5);
  const b = make([d]);
  const e = r * d * 4;
  bw('layerNorm forward', [r, d], 2 * e, await time(() => void launchLayerNorm(x, w, b, 1e-6)));
  const ln = launchLayerNorm(x, w, b, 1e-6);
  owned.push(ln.y, ln.mean, ln.rstd);
  bw('layerNorm backward dx', [r, d], 3 * e, await time(() => void launchLayerNormBackward(g, x, w, ln.mean, ln.rstd, { dx: true, dparams: false })));
  bw(
    'layerNorm backward dweight, dbias',
    [r, d],
    2 * e,
    await time(() => void launchLayerNormBackward(g, x, w, ln.mean, ln.rstd, { dx: false, dparams: true })),
    'row-chunk partials, then a sum over chunks',
  );

  const l2 = launchL2Normalize(x, 1e-12);
  owned.push(l2.y, l2.norm);
  bw('l2Normalize forward', [r, d], 2 * e, await time(() => void launchL2Normalize(x, 1e-12)));
  bw('l2Normalize backward', [r, d], 3 * e, await time(() => void launchL2NormalizeBackward(g, x, l2.norm, 1e-12)));

  const [sr, sn] = opts.quick ? [24, 65] : [12 * 785, 785];
  const s = make([sr, sn], -8, 8);
  const sg = make([sr, sn]);
  const se = sr * sn * 4;
  for (const kind of ['softmax', 'log_softmax'] as const) {
    bw(`${kind} forward`, [sr, sn], 2 * se, await time(() => void launchSoftmax(kind, s)));
    const y = launchSoftmax(kind, s);
    owned.push(y);
    bw(`${kind} backward`, [sr, sn], 3 * se, await time(() => void launchSoftmaxBackward(kind, sg, y)));
  }

  const [cb, cc] = [16, 200];
  const logits = make([cb, cc], -10, 10);
  const labels = tensor(dev, rng.ints(cb, cc), [cb]);
  const one = tensor(dev, [1], []);
  owned.push(labels, one);
  const ce = launchCrossEntropy(logits, labels, 0.1);
  owned.push(ce.loss, ce.stats);
  const us = (name: string, sec: number) =>
    rows.push({ suite: 'kernels', name, shape: `[${cb}, ${cc}]`, metric: 'time', value: sec * 1e6, unit: 'us', note: 'launch-bound at this size; includes submit and wait' });
  us('crossEntropy forward (smoothing 0.1)', await time(() => void launchCrossEntropy(logits, labels, 0.1)));
  us('crossEntropy backward', await time(() => void launchCrossEntropyBackward(one, logits, labels, ce.stats, 0.1)));

  for (const t of owned) t.dispose();
  return rows;
}
