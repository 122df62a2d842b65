// The demo: a small MP-FGVC trained from scratch, both stages, on the embedded synthetic birds
// (24 subcategories that differ only in beak, eye ring, wing bar, tail and crest). Sized to finish
// in a few minutes on a CPU-only WebGPU adapter (lavapipe on 2 cores); the time and accuracies are
// measured by `node packages/train/scripts/demo.mjs` (see the package README).
//
// What makes a from-scratch ViT learn these parts in minutes: 4-pixel patches (a 64-wide token
// keeps all 48 values of a patch, where an 8-pixel patch squeezed 192 into 64 and the model never
// left chance), new images every epoch (it cannot get by on memorising a few hundred), and
// variance-preserving initialisation (see Linear).
import { resolve } from 'node:path';
import type { Device } from '@mpfgvc/kernels';
import { DEMO_MODEL } from '@mpfgvc/model';
import type { EvalResult } from './eval.js';
import type { TrainConfigInput } from './loop/config.js';
import { type TrainResult, train } from './loop/trainer.js';

export interface DemoOptions {
  /** The run directory (default ./mpfgvc-demo). */
  outDir?: string;
  device?: Device;
  numClasses?: number; // 24
  seed?: number; // 0
  /** Stage-1 and stage-2 epochs (default DEMO_EPOCHS). */
  epochs?: [number, number];
  /** Progress lines; default: none. */
  log?: (line: string) => void;
}

export interface DemoResult {
  outDir: string;
  model: string;
  checkpoint: string;
  metrics: string;
  summary: string;
  evalJson: string;
  confusionCsv: string;
  /** Top-1 on the synthetic test split after both stages. */
  top1: EvalResult['top1'];
  chance: number;
  seconds: number;
  train: TrainResult;
}

export const DEMO_EPOCHS: readonly [number, number] = [10, 10];

/** The demo's run configuration (also what `mpfgvc demo` records in config.json). */
export function demoConfig(opts: DemoOptions = {}): TrainConfigInput {
  const [e1, e2] = opts.epochs ?? DEMO_EPOCHS;
  return {
    outDir: resolve(opts.outDir ?? 'mpfgvc-demo'),
    seed: opts.seed ?? 0,
    data: { kind: 'synth', numClasses: opts.numClasses ?? 24, trainPerClass: 150, testPerClass: 20, fresh: true },
    model: DEMO_MODEL,
    promptTokens: { classIds: [0], sot: 1, eot: 2 },
    stage1: { epochs: e1, batchSize: 32, optimizer: 'adamw', lr: 2e-3, minLr: 1e-5, warmupEpochs: 1, weightDecay: 0.05, clipNorm: 1, labelSmoothing: 0, augment: true },
    stage2: { epochs: e2, batchSize: 32, optimizer: 'adamw', lr: 3e-3, minLr: 1e-5, warmupEpochs: 1, weightDecay: 0.05, clipNorm: 1, labelSmoothing: 0, augment: false },
    checkpointEvery: 500,
    evalEvery: 2,
    evalBatchSize: 80,
  };
}

export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const cfg = demoConfig(opts);
  const hooks = { ...(opts.device ? { device: opts.device } : {}), ...(opts.log ? { log: opts.log } : {}) };
  const result = await train(cfg, hooks);
  const last = result.stages[result.stages.length - 1]!;
  return {
    outDir: result.outDir,
    model: result.model,
    checkpoint: result.checkpoint,
    metrics: result.metrics,
    summary: result.summary,
    evalJson: last.evalJson,
    confusionCsv: last.confusionCsv,
    top1: last.eval.top1,
    chance: 1 / (opts.numClasses ?? 24),
    seconds: result.seconds,
    train: result,
  };
}
