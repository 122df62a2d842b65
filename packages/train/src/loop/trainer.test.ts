import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Device, DeviceLostError, requestDevice } from '@mpfgvc/kernels';
import { testDevice } from '@mpfgvc/kernels/testing';
import { MPFGVC, TEST_MODEL } from '@mpfgvc/model';
import { CHECKPOINT_FILE, STAGE1_CHECKPOINT_FILE, assertFiniteSafetensors, readCheckpoint } from '../checkpoint.js';
import { TrainingInterrupted } from '../errors.js';
import { LOCK_FILE } from '../run-folder.js';
import { evaluate } from '../eval.js';
import { writeCubLayout } from '../synth/cub.js';
import type { TrainConfigInput } from './config.js';
import { openRunData } from './data.js';
import { type StepRow, parseMetricsRow } from './metrics.js';
import { train } from './trainer.js';

// A tiny MP-FGVC trained through the real path of a dataset on disk: the synthetic birds written in
// CUB-200-2011 layout, read by the CUB reader, prepared by the image pipeline (on the main thread).
const tokenizer = fileURLToPath(new URL('../../../model/fixtures/tokenizer-clip-tiny.json', import.meta.url));
const temp = mkdtempSync(join(tmpdir(), 'mpfgvc-train-'));
const cub = join(temp, 'cub');
// Three subcategories with enough images to learn them, for the held-out accuracy check.
const cubLearn = join(temp, 'cub-learn');
let dev: Device;

beforeAll(async () => {
  dev = await testDevice();
  await writeCubLayout(cub, { numClasses: 6, trainPerClass: 16, testPerClass: 8, size: 32, seed: 1 });
  await writeCubLayout(cubLearn, { numClasses: 3, trainPerClass: 200, testPerClass: 20, size: 32, seed: 1 });
});
afterAll(() => rmSync(temp, { recursive: true, force: true }));

function config(outDir: string, over: Partial<TrainConfigInput> = {}): TrainConfigInput {
  return {
    outDir,
    seed: 3,
    // The whole training split trains (valFraction 0) unless a test asks for a validation split.
    data: { kind: 'folder', root: cub, workers: 0, cropScale: [0.6, 1], valFraction: 0 },
    model: {
      ...TEST_MODEL,
      vision: { ...TEST_MODEL.vision, imageSize: 32, patchSize: 8, width: 32 },
      text: { ...TEST_MODEL.text, vocabSize: 795, width: 32 },
      embedDim: 32,
      selectK: 6,
    },
    tokenizer,
    stage1: { epochs: 60, batchSize: 16, lr: 3e-3, warmupEpochs: 1, weightDecay: 0.05, augment: false },
    stage2: { epochs: 20, batchSize: 16, lr: 3e-3, warmupEpochs: 1 },
    evalBatchSize: 48,
    ...over,
  };
}

const rows = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('train', () => {
  it('trains both stages on a CUB-layout dataset: every head is far above chance on held-out images', async () => {
    const dir = join(temp, 'full');
    const base = config(dir);
    // 4-pixel patches: an 8-pixel patch squeezed into a 32-wide token loses the small parts.
    const learn = config(dir, {
      data: { kind: 'folder', root: cubLearn, workers: 0, cropScale: [0.6, 1], valFraction: 0.1 },
      model: { ...base.model, vision: { ...base.model.vision, patchSize: 4, depth: 2 } },
      stage1: { epochs: 10, batchSize: 16, lr: 2e-3, warmupEpochs: 1, weightDecay: 0.05, augment: true },
      stage2: { epochs: 4, batchSize: 16, lr: 3e-3, warmupEpochs: 1 },
    });
    const result = await train(learn, { device: dev });
    const [s1, s2] = result.stages;
    const model = MPFGVC.load(dev, new Uint8Array(readFileSync(result.model)));
    const data = openRunData(result.config.data, { imageSize: 32, normalization: 'imagenet', seed: 3, strict: true });
    const fit = await evaluate(model, data.trainPlain(48));
    model.dispose();

    const metrics = rows(dir);
    // Every row the loop wrote is one that plot's reader accepts.
    metrics.forEach((r, i) => parseMetricsRow(r, `metrics.jsonl line ${i + 1}`));
    const steps = metrics.filter((r) => 'loss' in r);
    const meanLoss = (stage: number, epoch: number) => {
      const losses = steps.filter((r) => r.stage === stage && r.epoch === epoch).map((r) => r.loss as number);
      return losses.reduce((a, l) => a + l, 0) / losses.length;
    };
    const chance = 1 / 3;
    console.log(`test top-1 after stage 1 ${JSON.stringify(s1!.eval.top1)}, after stage 2 ${JSON.stringify(s2!.eval.top1)}; training images ${JSON.stringify(fit.top1)} (chance ${chance.toFixed(3)})`);
    console.log(`mean loss of the first and last epoch: stage 1 ${meanLoss(1, 0)}, ${meanLoss(1, 9)}; stage 2 ${meanLoss(2, 0)}, ${meanLoss(2, 3)}`);
    // The model learned its training images (every head about 0.93 with this seed; a tenth of each
    // class's 200 images is held out for validation) and each stage's loss fell to under half
    // (about a fifth and a third here)...
    expect(fit.count).toBe(540);
    for (const head of ['vision', 'text', 'vlfm', 'ensemble'] as const) expect(fit.top1[head], `${head} on the training images`).toBeGreaterThan(0.8);
    expect(meanLoss(1, 9)).toBeLessThan(0.5 * meanLoss(1, 0));
    expect(meanLoss(2, 3)).toBeLessThan(0.5 * meanLoss(2, 0));
    // ... and what it learned holds on the test images.
    expect(s2!.eval.count).toBe(60);
    for (const head of ['vision', 'text', 'vlfm', 'ensemble'] as const) expect(s2!.eval.top1[head], head).toBeGreaterThan(0.7);

    expect(steps.map((r) => r.step)).toEqual(Array.from({ length: result.steps }, (_, i) => i + 1));
    expect(steps[0]).toMatchObject({ stage: 1, epoch: 0, step: 1 });
    expect(steps[0]!.loss as number).toBeCloseTo((steps[0]!.lossVision as number) + (steps[0]!.lossText as number), 5);
    expect(steps.at(-1)).toMatchObject({ stage: 2, epoch: 3 });
    expect(steps.at(-1)).not.toHaveProperty('lossVision');
    const evals = metrics.filter((r) => r.split === 'test');
    expect(evals.map((r) => r.stage)).toEqual([1, 2]);
    // Validation at each stage's end (the run evaluates nothing in between), and the best of them kept.
    const vals = metrics.filter((r) => r.split === 'val');
    expect(vals.map((r) => r.stage)).toEqual([1, 2]);
    expect(s2!.val!.count).toBe(60);
    const summary = JSON.parse(readFileSync(result.summary, 'utf8'));
    const bestTop1 = Math.max(...vals.map((r) => (r.top1 as Record<string, number>).ensemble!));
    expect(summary.best).toMatchObject({ head: 'ensemble', top1: bestTop1, model: join(dir, 'best.safetensors') });
    expect(result.best?.top1).toBe(bestTop1);
    MPFGVC.load(dev, new Uint8Array(readFileSync(join(dir, 'best.safetensors')))).dispose();
    expect(Object.keys(evals[1]!.top5 as object)).toEqual(['vision', 'text', 'vlfm', 'ensemble']);

    const csv = readFileSync(s2!.confusionCsv, 'utf8').trimEnd().split('\n');
    expect(csv).toHaveLength(4);
    expect(csv.slice(1).reduce((n, line) => n + line.split(',').slice(1).reduce((a, v) => a + Number(v), 0), 0)).toBe(60);
    const ev = JSON.parse(readFileSync(s2!.evalJson, 'utf8'));
    expect(ev.perClass.ensemble).toHaveLength(3);
    expect(JSON.parse(readFileSync(result.summary, 'utf8'))).toMatchObject({ status: 'completed', skippedImages: { count: 0 } });
  });

  it('a run stopped after a checkpoint and resumed with a fresh model continues with the same losses', async () => {
    const short: Partial<TrainConfigInput> = { stage1: { epochs: 2, batchSize: 16, lr: 3e-3, augment: true }, stage2: { epochs: 1, batchSize: 16, lr: 3e-3 }, checkpointEvery: 4 };
    const whole: StepRow[] = [];
    await train(config(join(temp, 'whole'), short), { device: dev, onStep: (r) => whole.push(r) });

    const dir = join(temp, 'killed');
    await expect(
      train(config(dir, short), {
        device: dev,
        onStep: (r) => {
          if (r.step === 6) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    expect(readCheckpoint(dir).record.position).toMatchObject({ stage: 1, step: 4, stageDone: false, data: { epoch: 0, index: 64 } });

    const resumed: StepRow[] = [];
    await train({ resume: dir }, { device: dev, onStep: (r) => resumed.push(r) });
    expect(resumed[0]!.step).toBe(5);
    expect(resumed.map((r) => r.step)).toEqual(whole.filter((r) => r.step > 4).map((r) => r.step));
    resumed.forEach((r, i) => {
      const w = whole.find((x) => x.step === r.step)!;
      expect(r.stage).toBe(w.stage);
      expect(r.lr).toBe(w.lr);
      expect(Math.abs(r.loss - w.loss), `step ${r.step}: ${r.loss} vs ${w.loss} (${i})`).toBeLessThanOrEqual(1e-6);
    });
    expect(rows(dir).some((r) => r.event === 'resume' && r.step === 4)).toBe(true);
  });

  it('stops on a non-finite loss naming stage, epoch and step, keeping the last good checkpoint', async () => {
    const dir = join(temp, 'diverged');
    let lastGood = '';
    const run = train(config(dir, { stage1: { epochs: 2, batchSize: 16, lr: 1e30, warmupEpochs: 0, clipNorm: 0 }, checkpointEvery: 1 }), {
      device: dev,
      onCheckpoint: () => {
        lastGood = readFileSync(join(dir, CHECKPOINT_FILE), 'utf8');
      },
    });
    await expect(run).rejects.toThrow(/(non-finite loss|holds (NaN|-?Infinity)).*stage 1, epoch 0, step \d+|stage 1, epoch 0, step \d+: .*holds/);
    expect(lastGood).not.toBe('');
    expect(readFileSync(join(dir, CHECKPOINT_FILE), 'utf8')).toBe(lastGood);
    const { record, model } = readCheckpoint(dir);
    assertFiniteSafetensors(model, 'kept checkpoint');
    expect(existsSync(join(dir, record.optimizer))).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).status).toBe('failed');
  });

  it('skips an unreadable image, names it in the summary, and fails on it when strict', async () => {
    const broken = join(temp, 'broken');
    await writeCubLayout(broken, { numClasses: 6, trainPerClass: 4, testPerClass: 1, size: 32, seed: 1 });
    const victim = join(broken, 'images', readFileSync(join(broken, 'images.txt'), 'utf8').split('\n')[2]!.split(' ')[1]!);
    writeFileSync(victim, readFileSync(victim).subarray(0, 40));
    const quick = (dir: string, strict: boolean) =>
      config(dir, { data: { kind: 'folder', root: broken, workers: 0, valFraction: 0 }, strict, stage1: { epochs: 1, batchSize: 8, augment: false }, stage2: { epochs: 1, batchSize: 8 } });
    const said: string[] = [];
    const result = await train(quick(join(temp, 'skip'), false), { device: dev, log: (l) => said.push(l) });
    expect(Object.keys(result.skipped)).toEqual([victim]);
    expect(said.filter((l) => l.startsWith('skipped'))).toEqual([expect.stringMatching(`^skipped an unreadable image: ${victim}: `)]);
    // Met in stage 1, in stage 2's embedding cache and at each evaluation, it counts once.
    expect(result.skipCount).toBe(1);
    expect(JSON.parse(readFileSync(result.summary, 'utf8')).skippedImages.files[victim]).toBeTypeOf('string');
    await expect(train(quick(join(temp, 'strict'), true), { device: dev })).rejects.toThrow(`cannot read ${victim}`);
  });

  it('stops when too much of the dataset is unreadable, and never completes on a dataset it could not read', async () => {
    const dir = join(temp, 'unreadable');
    await writeCubLayout(dir, { numClasses: 3, trainPerClass: 4, testPerClass: 2, size: 32, seed: 2 });
    const files = readFileSync(join(dir, 'images.txt'), 'utf8').trim().split('\n').map((l) => join(dir, 'images', l.split(' ')[1]!));
    const quick = (out: string, over: Partial<TrainConfigInput> = {}) =>
      config(join(temp, out), { data: { kind: 'folder', root: dir, workers: 0, valFraction: 0 }, stage1: { epochs: 1, batchSize: 4, augment: false }, stage2: { epochs: 1, batchSize: 4 }, ...over });
    for (const f of files.slice(0, 2)) writeFileSync(f, 'not an image');
    // One of 18 is already more than the default 5%; a fraction of 0.2 lets the run go on past two.
    await expect(train(quick('too-many'), { device: dev })).rejects.toThrow(/^1 of the 18 images are unreadable, more than the 0.05 \(maxSkippedFraction\) the run allows; the first: /);
    expect((await train(quick('some', { maxSkippedFraction: 0.2 }), { device: dev })).skipCount).toBe(2);
    for (const f of files) writeFileSync(f, 'not an image');
    await expect(train(quick('none', { maxSkippedFraction: 1 }), { device: dev })).rejects.toThrow(/^stage 1, epoch 0: not one training image could be read \(12 unreadable; the first: /);
    expect(JSON.parse(readFileSync(join(temp, 'none', 'summary.json'), 'utf8')).status).toBe('failed');
    expect(existsSync(join(temp, 'none', 'model.safetensors'))).toBe(false);
  });

  it('names the missing file of a wrong dataset layout', async () => {
    const empty = join(temp, 'not-cub');
    await writeCubLayout(empty, { numClasses: 2, trainPerClass: 1, testPerClass: 1, size: 16 });
    rmSync(join(empty, 'train_test_split.txt'));
    await expect(train(config(join(temp, 'layout'), { data: { kind: 'folder', root: empty, format: 'cub', workers: 0 } }), { device: dev })).rejects.toThrow(
      `CUB-200-2011 at ${empty}: missing train_test_split.txt`,
    );
  });

  it('stops when asked after the step in progress, with a checkpoint there; the resume drops rows written past it and ends as the whole run', async () => {
    const short: Partial<TrainConfigInput> = { stage1: { epochs: 2, batchSize: 16, lr: 3e-3, augment: true }, stage2: { epochs: 1, batchSize: 16, lr: 3e-3 } };
    const whole: StepRow[] = [];
    await train(config(join(temp, 'whole-2'), short), { device: dev, onStep: (r) => whole.push(r) });

    const dir = join(temp, 'stopped');
    const stop = new AbortController();
    const run = train(config(dir, short), { device: dev, signal: stop.signal, onStep: (r) => r.step === 3 && stop.abort('SIGINT') });
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainingInterrupted);
    const at = (err as TrainingInterrupted).position!;
    // Row 3 is read back while step 4 is already recorded: the run stops after step 4.
    expect(at).toMatchObject({ stage: 1, step: 4, stageDone: false });
    expect((err as TrainingInterrupted).reason).toBe('SIGINT');
    expect(readCheckpoint(dir).record.position).toEqual(at);
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'))).toMatchObject({ status: 'interrupted', steps: 4 });
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);

    // A run killed later leaves rows past its checkpoint: the resume drops them, once.
    appendFileSync(join(dir, 'metrics.jsonl'), '{"stage":1,"epoch":0,"step":5,"loss":9}\n{"stage":1,"epoch":0,"step":6,"lo');
    const said: string[] = [];
    const resumed: StepRow[] = [];
    const result = await train({ resume: dir }, { device: dev, log: (l) => said.push(l), onStep: (r) => resumed.push(r) });
    expect(said).toContain('metrics.jsonl: 2 rows written after the checkpoint dropped');
    resumed.forEach((r) => expect(Math.abs(r.loss - whole.find((w) => w.step === r.step)!.loss), `step ${r.step}`).toBeLessThanOrEqual(1e-6));
    const steps = rows(dir).filter((r) => 'loss' in r).map((r) => r.step);
    expect(steps).toEqual(whole.map((r) => r.step));
    // The summary holds both stages, the one finished before the stop included.
    expect(result.stages.map((s) => s.stage)).toEqual([1, 2]);
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'))).toMatchObject({ status: 'completed', stages: [{ stage: 1 }, { stage: 2 }] });
  });

  it('a finished run resumes to nothing; longer stages go on, a longer stage 2 equal to a run started longer; a branch leaves its source alone', async () => {
    const short = (e1: number, e2: number): Partial<TrainConfigInput> => ({ stage1: { epochs: e1, batchSize: 16, lr: 3e-3, augment: false }, stage2: { epochs: e2, batchSize: 16, lr: 3e-3 } });
    const dir = join(temp, 'finished');
    const first = await train(config(dir, short(1, 1)), { device: dev });
    const files = ['model.safetensors', 'summary.json', 'metrics.jsonl', CHECKPOINT_FILE].map((f) => join(dir, f));
    const before = files.map((f) => [readFileSync(f), statSync(f).mtimeMs] as const);
    expect(existsSync(join(dir, STAGE1_CHECKPOINT_FILE))).toBe(true);

    const again = await train({ resume: dir }, { device: dev });
    expect(again.stages.map((s) => [s.stage, s.steps, s.eval.top1])).toEqual(first.stages.map((s) => [s.stage, s.steps, s.eval.top1]));
    files.forEach((f, i) => {
      expect(readFileSync(f).equals(before[i]![0]), f).toBe(true);
      expect(statSync(f).mtimeMs, f).toBe(before[i]![1]);
    });
    await expect(train({ resume: dir, epochs: { stage1: 0 } }, { device: dev })).rejects.toThrow("stage 1 epochs: a resumed run's stages can only grow (it has 1), got 0");

    // Stage 2 longer, into a branch: stage 2 trains again from the end of stage 1.
    const longer: StepRow[] = [];
    await train(config(join(temp, 'longer'), short(1, 2)), { device: dev, onStep: (r) => longer.push(r) });
    const branch = join(temp, 'branch');
    const branched: StepRow[] = [];
    const b = await train({ resume: dir, epochs: { stage2: 2 }, outDir: branch }, { device: dev, onStep: (r) => branched.push(r) });
    expect(branched.map((r) => r.step)).toEqual(longer.filter((r) => r.stage === 2).map((r) => r.step));
    branched.forEach((r) => expect(Math.abs(r.loss - longer.find((w) => w.step === r.step)!.loss), `step ${r.step}`).toBeLessThanOrEqual(1e-6));
    expect(b.stages.map((s) => s.stage)).toEqual([1, 2]);
    expect(JSON.parse(readFileSync(join(branch, 'config.json'), 'utf8'))).toMatchObject({ outDir: branch, stage2: { epochs: 2 } });
    expect(rows(branch).filter((r) => 'loss' in r).map((r) => r.step)).toEqual(longer.map((r) => r.step));
    files.forEach((f, i) => expect(readFileSync(f).equals(before[i]![0]), f).toBe(true));

    // Stage 1 longer, in place: stage 1 goes on from its end, then stage 2 runs again.
    const said: string[] = [];
    const grown = await train({ resume: dir, epochs: { stage1: 2 } }, { device: dev, log: (l) => said.push(l) });
    expect(said[0]).toMatch(/stage 1 goes on to 2 epochs \(was 1\)$/);
    expect(grown.steps).toBe(first.steps + first.stages[0]!.steps);
    const steps = rows(dir).filter((r) => 'loss' in r).map((r) => r.step as number);
    expect(steps).toEqual(Array.from({ length: grown.steps }, (_, i) => i + 1));
    expect(readCheckpoint(dir).record.config).toMatchObject({ stage1: { epochs: 2 } });
  });

  it('a device lost mid-run is one error naming the checkpoint kept; the run resumes on a working device', async () => {
    const dir = join(temp, 'lost');
    const own = await requestDevice();
    const quick = config(dir, { stage1: { epochs: 2, batchSize: 16, lr: 3e-3, augment: false }, stage2: { epochs: 1, batchSize: 16, lr: 3e-3 }, checkpointEvery: 2 });
    const err = await train(quick, { device: own, onStep: (r) => r.step === 5 && own.gpu.destroy() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceLostError);
    expect((err as Error).message).toMatch(/^GPU device lost \(destroyed.*\): training stopped at step \d+; the checkpoint at stage 1, step (4|6) is kept \(resume the run\)$/);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    expect(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).status).toBe('failed');
    const resumed = await train({ resume: dir }, { device: dev });
    expect(resumed.stages.map((s) => s.stage)).toEqual([1, 2]);
  });

  it('the GPU buffer pool stays flat over a run: after the first epoch no step allocates more', async () => {
    const seen: { step: number; allocated: number; buffers: number }[] = [];
    await train(config(join(temp, 'flat'), { stage1: { epochs: 8, batchSize: 16, lr: 3e-3, augment: true }, stage2: { epochs: 0 } }), {
      device: dev,
      onStep: (r) => seen.push({ step: r.step, ...dev.pool.stats() }),
    });
    expect(seen).toHaveLength(48);
    const [warm, last] = [seen[6]!, seen.at(-1)!];
    expect(last.allocated, `allocated at step ${warm.step} and ${last.step}`).toBe(warm.allocated);
    expect(last.buffers).toBe(warm.buffers);
  });
});

