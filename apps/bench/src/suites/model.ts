// End-to-end suites on the assembled model: training-step and inference throughput with peak GPU
// memory for named configs, and the DaTP text pass with and without the exact EOT truncation.
import { AdamW, type Device, Rng, type Tensor, backward, clipGradNorm, concat, keep, noGrad, reshape, scope, sum, tensor, zeros } from '@mpfgvc/kernels';
import { DEMO_MODEL, MPFGVC, type MPFGVCConfig, type ModelPreset, TINY_MODEL, VIT_B16_MODEL, VIT_TINY_224_MODEL } from '@mpfgvc/model';
import { costRows, median, profileRows, stepCost, timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import type { SuiteOptions } from './options.js';
import { synthRows } from './synth.js';

export interface NamedConfig {
  name: string;
  model: MPFGVCConfig;
  batch: number;
}

const withClasses = (name: string, preset: ModelPreset, numClasses: number, batch: number): NamedConfig => ({ name, batch, model: { ...preset, numClasses, superCategory: 'bird' } });

export const CONFIGS: Record<string, NamedConfig> = {
  tiny: withClasses('tiny', TINY_MODEL, 24, 16),
  // The demo's model and batch (24 synthetic bird classes, B 32), as `npm run demo` trains it.
  demo: withClasses('demo', DEMO_MODEL, 24, 32),
  'vit-tiny-224': withClasses('vit-tiny-224', VIT_TINY_224_MODEL, 200, 8),
  'vit-b16-448': withClasses('vit-b16-448', VIT_B16_MODEL, 200, 8),
};

/** The configs a run measures: the big one only on a hardware adapter (a step takes minutes in software). */
function chosen(dev: Device, opts: SuiteOptions): NamedConfig[] {
  if (opts.quick) return [{ ...CONFIGS.tiny!, batch: 2 }];
  const names = dev.info.isFallback ? ['tiny', 'demo', 'vit-tiny-224'] : ['tiny', 'demo', 'vit-tiny-224', 'vit-b16-448'];
  return names.map((n) => CONFIGS[n]!);
}

function build(dev: Device, cfg: NamedConfig): { model: MPFGVC; images: Tensor; labels: Int32Array } {
  // Prompt token ids stand in for a tokenizer's: the benchmark measures compute, not text.
  const V = cfg.model.text.vocabSize;
  const model = new MPFGVC(dev, new Rng(1), cfg.model, { classIds: V > 3 ? [5, 6] : [0], sot: V - 2, eot: V - 1 });
  const s = cfg.model.vision.imageSize;
  const images = tensor(dev, new Rng(2).normal(cfg.batch * 3 * s * s), [cfg.batch, 3, s, s]);
  const labels = Int32Array.from({ length: cfg.batch }, (_, i) => i % cfg.model.numClasses);
  return { model, images, labels };
}

const MiB = 1024 * 1024;

/**
 * The same step with waits that poll at once and back to back, as Dawn's Node bindings do by
 * default (see the kernels' wait.ts), against paced waits (sleeping first, then polling gently):
 * what the pacing buys on this adapter. The two alternate in blocks of steps (the first step of a
 * block settles the pacer and is not counted), so that a machine whose speed drifts during the
 * run favours neither.
 */
async function pollingRows(dev: Device, step: () => void, name: string, shape: string, batch: number, opts: SuiteOptions): Promise<Row[]> {
  const times: Record<'paced' | 'polling', number[]> = { paced: [], polling: [] };
  const blocks = opts.quick ? 1 : 2;
  const perBlock = opts.quick ? 2 : 3;
  const before = dev.sleepWhileWaiting;
  try {
    for (let b = 0; b < 2 * blocks; b++) {
      const mode = b % 2 === 0 ? 'paced' : 'polling';
      dev.sleepWhileWaiting = mode === 'paced';
      for (let i = 0; i < perBlock; i++) {
        const t0 = performance.now();
        step();
        await dev.sync();
        if (i > 0) times[mode].push((performance.now() - t0) / 1000);
      }
    }
  } finally {
    dev.sleepWhileWaiting = before;
  }
  const [paced, polling] = [median(times.paced), median(times.polling)];
  const note = `median of ${times.paced.length} steps each, alternating in blocks`;
  return [
    { suite: 'train', name: `${name}, waits polling`, shape, metric: 'throughput', value: batch / polling, unit: 'images/s', note },
    { suite: 'train', name: `${name}, waits paced`, shape, metric: 'throughput', value: batch / paced, unit: 'images/s', note },
    { suite: 'train', name: `${name}: paced / polling waits`, shape, metric: 'ratio', value: polling / paced, unit: '×', note },
  ];
}

export async function trainSuite(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rows: Row[] = [];
  for (const cfg of chosen(dev, opts)) {
    // Memory is counted from here: what other suites of the run still hold is not this model's.
    const base = dev.pool.stats().inUse;
    const { model, images, labels } = build(dev, cfg);
    const shape = `B=${cfg.batch} ${cfg.model.vision.imageSize}² C=${cfg.model.numClasses}`;
    for (const stage of [1, 2] as const) {
      model.setStage(stage);
      const opt = new AdamW(model.trainable(stage), { lr: 1e-4 });
      const text = stage === 2 ? noGrad(() => model.textFeatures()) : undefined;
      // As the trainer steps: forward, backward, global-norm clipping at 1, AdamW.
      const params = model.trainable(stage);
      const step = () => {
        const { loss } = stage === 1 ? model.stageOne(images, labels) : model.stageTwo(images, labels, text!);
        backward(loss);
        clipGradNorm(params, 1).dispose();
        opt.step();
        opt.zeroGrad();
        loss.dispose();
      };
      step();
      await dev.sync();
      dev.pool.resetPeak();
      const resident = dev.pool.stats().inUse - base;
      const cost = await stepCost(dev, step);
      const sec = await timeGpu(dev, step, { warmup: 1, repeats: opts.quick ? 1 : 3, wallClock: true });
      const peak = dev.pool.stats().peakInUse - base;
      const name = `${cfg.name} stage ${stage} step`;
      rows.push({ suite: 'train', name, shape, metric: 'throughput', value: cfg.batch / sec, unit: 'images/s' });
      if (stage === 1 && dev.sleepWhileWaiting) rows.push(...(await pollingRows(dev, step, name, shape, cfg.batch, opts)));
      rows.push({ suite: 'train', name, shape, metric: 'peak GPU memory', value: peak / MiB, unit: 'MiB', note: `${(resident / MiB).toFixed(1)} MiB resident (weights, optimiser state, inputs)` });
      rows.push(...costRows('train', name, shape, cost));
      if (dev.has('timestamp-query')) rows.push(...profileRows('train', name, shape, await dev.profile(step)));
      opt.dispose();
      text?.dispose();
    }
    model.dispose();
    images.dispose();
    dev.trim();
  }
  // What feeds the demo's steps: its training set is drawn anew every epoch.
  rows.push(...synthRows(opts));
  return rows;
}

export async function inferSuite(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rows: Row[] = [];
  for (const cfg of chosen(dev, opts)) {
    const base = dev.pool.stats().inUse;
    const { model, images } = build(dev, cfg);
    const text = noGrad(() => model.textFeatures());
    dev.pool.resetPeak();
    const sec = await timeGpu(dev, () => scope(() => void model.predict(images, text)), { warmup: 1, repeats: opts.quick ? 1 : 3, wallClock: true });
    const shape = `B=${cfg.batch} ${cfg.model.vision.imageSize}² C=${cfg.model.numClasses}`;
    rows.push({ suite: 'infer', name: `${cfg.name} predict (all heads)`, shape, metric: 'throughput', value: cfg.batch / sec, unit: 'images/s' });
    rows.push({ suite: 'infer', name: `${cfg.name} predict (all heads)`, shape, metric: 'peak GPU memory', value: (dev.pool.stats().peakInUse - base) / MiB, unit: 'MiB' });
    text.dispose();
    model.dispose();
    images.dispose();
    dev.trim();
  }
  return rows;
}

/**
 * The DaTP text pass (forward + backward to the prompts) run up to EOT, against the same pass
 * over CLIP's full context with padding after EOT: the outputs are equal under the causal mask,
 * the work is not.
 */
export async function textSuite(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const cfg = opts.quick ? { ...CONFIGS.tiny!, model: { ...CONFIGS.tiny!.model, numClasses: 4 } } : dev.info.isFallback ? CONFIGS['vit-tiny-224']! : CONFIGS['vit-b16-448']!;
  const { model } = build(dev, cfg);
  model.setStage(1);
  const datp = model.datp;
  if (!datp) throw new Error(`text suite: config ${cfg.name} has no DaTP prompts`);
  const L = datp.length;
  const context = cfg.model.text.contextLength;
  const run = (padded: boolean) => () =>
    scope(() => {
      let x = datp.embeddings(model.text); // (C, L, D_t)
      if (padded) x = concat([x, zeros(dev, [x.shape[0]!, context - L, x.shape[2]!])], 1);
      const t = model.text.encodeEmbeddings(x, L - 1);
      backward(sum(t));
      datp.prompts.grad?.dispose();
      datp.prompts.grad = null;
    });
  const truncated = await timeGpu(dev, run(false), { warmup: 1, repeats: opts.quick ? 1 : 3, wallClock: true });
  const full = await timeGpu(dev, run(true), { warmup: 1, repeats: opts.quick ? 1 : 3, wallClock: true });
  const shape = `C=${cfg.model.numClasses} prompts, ${L} vs ${context} tokens, width ${cfg.model.text.width} depth ${cfg.model.text.depth}`;
  model.dispose();
  dev.trim();
  return [
    { suite: 'text', name: 'DaTP pass, run to EOT', shape, metric: 'time', value: truncated * 1e3, unit: 'ms' },
    { suite: 'text', name: 'DaTP pass, full context', shape, metric: 'time', value: full * 1e3, unit: 'ms' },
    { suite: 'text', name: 'truncation gain', shape, metric: 'ratio', value: full / truncated, unit: '×' },
  ];
}

/**
 * The pool over a long run: stage-1 steps of the demo configuration (as the trainer steps them,
 * with the loss read back each step), the pool's allocation and buffer count after the warm-up
 * and after the last step. A pool that holds on to what a step released grows here.
 */
export async function memorySuite(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const cfg = opts.quick ? { ...CONFIGS.tiny!, batch: 2 } : CONFIGS.demo!;
  const steps = opts.quick ? 20 : 1000;
  const warm = Math.min(10, steps);
  const { model, images, labels } = build(dev, cfg);
  const opt = new AdamW(model.trainable(1), { lr: 1e-4 });
  const params = model.trainable(1);
  const shape = `B=${cfg.batch} ${cfg.model.vision.imageSize}² C=${cfg.model.numClasses}, ${steps} steps`;
  let after: { allocated: number; buffers: number } | undefined;
  const started = performance.now();
  for (let i = 1; i <= steps; i++) {
    // The trainer's step: the loss and its parts with the gradient norm in one small read-back.
    const parts = scope(() => {
      const o = model.stageOne(images, labels);
      backward(o.loss);
      return keep(noGrad(() => concat([o.loss, o.lossVision, o.lossText].map((p) => reshape(p, [1])), 0)));
    });
    const norm = clipGradNorm(params, 1);
    opt.step();
    opt.zeroGrad();
    const values = keep(scope(() => noGrad(() => concat([parts, reshape(norm, [1])], 0))));
    norm.dispose();
    parts.dispose();
    await values.read();
    values.dispose();
    if (i === warm) after = { allocated: dev.pool.stats().allocated, buffers: dev.pool.stats().buffers };
  }
  const end = dev.pool.stats();
  const name = `${cfg.name} stage 1, pool over a long run`;
  const rows: Row[] = [
    { suite: 'memory', name, shape, metric: 'pool allocated after warm-up', value: after!.allocated / MiB, unit: 'MiB', note: `after step ${warm}; ${after!.buffers} buffers` },
    { suite: 'memory', name, shape, metric: 'pool allocated at the end', value: end.allocated / MiB, unit: 'MiB', note: `after step ${steps}; ${end.buffers} buffers; ${((performance.now() - started) / 1000).toFixed(0)} s` },
    { suite: 'memory', name, shape, metric: 'growth', value: (end.allocated - after!.allocated) / MiB, unit: 'MiB', note: `${end.buffers - after!.buffers} buffers more` },
  ];
  opt.dispose();
  model.dispose();
  images.dispose();
  dev.trim();
  return rows;
}

