// The ablation variants through the loop on the in-memory synthetic birds: the ViT-only objective
// (stage 1 on L_v alone, no stage 2, the vision head evaluated alone; exact resume) and fixed
// prompts built from a CLIP tokenizer and the class names (nothing on the text side trains).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng } from '@mpfgvc/kernels';
import { testDevice } from '@mpfgvc/kernels/testing';
import { ClipTokenizer, MPFGVC, TEST_MODEL, parseSafetensors, readF32 } from '@mpfgvc/model';
import { readCheckpoint } from '../checkpoint.js';
import { fillPrompt } from '../prompts.js';
import { birdClasses } from '../synth/birds.js';
import { type TrainConfigInput, resolveConfig } from './config.js';
import type { StepRow } from './metrics.js';
import { train } from './trainer.js';

const tokenizerPath = fileURLToPath(new URL('../../../model/fixtures/tokenizer-clip-tiny.json', import.meta.url));
const temp = mkdtempSync(join(tmpdir(), 'mpfgvc-variants-'));
let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});
afterAll(() => rmSync(temp, { recursive: true, force: true }));

function config(outDir: string, over: Partial<TrainConfigInput> = {}, model: Partial<TrainConfigInput['model']> = {}): TrainConfigInput {
  return {
    outDir,
    seed: 2,
    data: { kind: 'synth', numClasses: 3, trainPerClass: 8, testPerClass: 2 },
    model: {
      ...TEST_MODEL,
      vision: { ...TEST_MODEL.vision, imageSize: 32, patchSize: 8, depth: 2 },
      text: { ...TEST_MODEL.text, depth: 1 },
      embedDim: 16,
      selectK: 4,
      promptLength: 2,
      ...model,
    },
    promptTokens: { classIds: [0], sot: 1, eot: 2 },
    stage1: { epochs: 3, batchSize: 8, lr: 3e-3, warmupEpochs: 0 },
    stage2: { epochs: 1, batchSize: 8, lr: 3e-3 },
    ...over,
  };
}

const jsonl = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('ViT only (model.objective vision)', () => {
  it('trains stage 1 on L_v alone, skips stage 2, evaluates the vision head only, and resumes exactly', async () => {
    const vision = { objective: 'vision' as const };
    const short = { stage1: { epochs: 3, batchSize: 8, lr: 3e-3, warmupEpochs: 0, augment: false }, stage2: { batchSize: 8 }, checkpointEvery: 4 };
    const whole: StepRow[] = [];
    const dir = join(temp, 'vit-whole');
    const result = await train(config(dir, short, vision), { device: dev, onStep: (r) => whole.push(r) });
    expect(result.stages.map((s) => s.stage)).toEqual([1]);
    expect(result.steps).toBe(9);
    expect(whole.every((r) => r.stage === 1 && r.lossVision === r.loss && r.lossText === undefined)).toBe(true);
    const epochLoss = (e: number) => whole.filter((r) => r.epoch === e).reduce((a, r) => a + r.loss, 0);
    expect(epochLoss(2)).toBeLessThan(epochLoss(0));
    const ev = result.stages[0]!.eval;
    expect(ev.heads).toEqual(['vision']);
    expect(Object.keys(ev.top1)).toEqual(['vision']);
    expect(ev.confusionHead).toBe('vision');
    expect(ev.confusion.flat().reduce((a, b) => a + b, 0)).toBe(6);
    expect(jsonl(dir).filter((r) => r.split === 'test').map((r) => Object.keys(r.top1 as object))).toEqual([['vision']]);
    const recorded = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(recorded.model).toMatchObject({ objective: 'vision', prompts: 'datp' });
    expect(recorded.stage2.epochs).toBe(0);
    expect((readCheckpoint(dir).record.config as typeof recorded).model.objective).toBe('vision');
    // The image encoder and its head trained; nothing else moved from its initial values.
    const model = MPFGVC.load(dev, new Uint8Array(readFileSync(result.model)));
    expect(model.config.objective).toBe('vision');
    const initial = new MPFGVC(dev, new Rng(2), model.config, model.tokens);
    const [after, before] = [await model.stateDict(), await initial.stateDict()];
    const trained = new Set(model.trainable(1).map((t) => model.namedParameters().find(([, p]) => p === t)![0]));
    expect(trained.has('vision_head.weight') && !trained.has('visual_projection.weight')).toBe(true);
    for (const [name, v] of after) {
      if (trained.has(name)) expect(v.data, name).not.toEqual(before.get(name)!.data);
      else expect(v.data, name).toEqual(before.get(name)!.data);
    }
    model.dispose();
    initial.dispose();

    const killed = join(temp, 'vit-killed');
    await expect(
      train(config(killed, short, vision), {
        device: dev,
        onStep: (r) => {
          if (r.step === 6) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    expect(readCheckpoint(killed).record.position).toMatchObject({ stage: 1, step: 4 });
    const resumed: StepRow[] = [];
    await train({ resume: killed }, { device: dev, onStep: (r) => resumed.push(r) });
    expect(resumed.map((r) => r.step)).toEqual([5, 6, 7, 8, 9]);
    for (const r of resumed) expect(r.loss, `step ${r.step}`).toBe(whole.find((w) => w.step === r.step)!.loss);
  });
});

describe('fixed prompts (model.prompts fixed)', () => {
  it("build each class's prompt from the template and the tokenizer; the text side never changes", async () => {
    const dir = join(temp, 'fixed');
    const tokenizer = ClipTokenizer.fromJson(JSON.parse(readFileSync(tokenizerPath, 'utf8')));
    const text = { ...TEST_MODEL.text, vocabSize: tokenizer.vocabSize, contextLength: 77, depth: 1 };
    const { promptTokens: _, ...noTokens } = config(dir, { stage1: { epochs: 1, batchSize: 8, lr: 3e-3 }, stage2: { epochs: 1, batchSize: 8, lr: 3e-3 } }, { prompts: 'fixed', text });
    const rows: StepRow[] = [];
    const result = await train({ ...noTokens, tokenizer: tokenizerPath }, { device: dev, onStep: (r) => rows.push(r) });
    expect(result.stages.map((s) => s.stage)).toEqual([1, 2]);
    expect(rows.filter((r) => r.stage === 1).every((r) => typeof r.lossText === 'number')).toBe(true);
    expect(result.stages[1]!.eval.heads).toEqual(['vision', 'text', 'vlfm', 'ensemble']);
    const names = birdClasses(3).map((c) => c.name);
    const st = parseSafetensors(new Uint8Array(readFileSync(result.model)), 'model');
    expect(JSON.parse(st.metadata.tokens!).classPrompts).toEqual(names.map((n) => tokenizer.encode(fillPrompt('a photo of a {class}, a type of {superCategory}.', n, 'bird'))));
    expect([...st.tensors.keys()].some((k) => k.startsWith('datp.'))).toBe(false);
    // After stage 1 the text tower still holds its initial values (a fresh model of the run's seed), the image side does not.
    const stage1 = parseSafetensors(new Uint8Array(readFileSync(join(dir, 'model-stage1.safetensors'))), 'stage1');
    const loaded = MPFGVC.load(dev, new Uint8Array(readFileSync(result.model)));
    const initial = new MPFGVC(dev, new Rng(2), loaded.config, loaded.tokens);
    const before = await initial.stateDict();
    const textKeys = [...stage1.tensors.keys()].filter((k) => k.startsWith('text.'));
    expect(textKeys.length).toBeGreaterThan(0);
    for (const k of textKeys) expect(readF32(stage1, k), k).toEqual(before.get(k)!.data);
    for (const k of ['visual_projection.weight', 'vision_head.weight']) expect(readF32(stage1, k), k).not.toEqual(before.get(k)!.data);
    loaded.dispose();
    initial.dispose();
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).model.prompts).toBe('fixed');
  });
});

describe('config', () => {
  it('names the key at fault', () => {
    const base = config(join(temp, 'cfg'));
    expect(() => resolveConfig({ ...base, model: { ...base.model, objective: 'vision' } })).toThrow(
      "config: stage2.epochs must be 0 with model.objective 'vision' (the ViT-only baseline trains L_v alone and has no VLFM stage), got 1",
    );
    expect(resolveConfig({ ...base, stage2: {}, model: { ...base.model, objective: 'vision' } }).stage2.epochs).toBe(0);
    expect(() => resolveConfig({ ...base, model: { ...base.model, prompts: 'fixed' } })).toThrow("config: model.prompts 'fixed' needs tokenizer (each class's prompt from promptTemplate) or promptTokens.classPrompts");
    expect(() => resolveConfig({ ...base, model: { ...base.model, prompts: 'learned' as 'fixed' } })).toThrow(`config: model.prompts: expected one of "datp", "fixed", got "learned"`);
    expect(() => resolveConfig({ ...base, model: { ...base.model, objective: 'text' as 'vision' } })).toThrow(`config: model.objective: expected one of "mpfgvc", "vision", got "text"`);
    expect(() => resolveConfig({ ...base, promptTemplate: 'a photo' })).toThrow('config: promptTemplate must be a string containing {class}');
    expect(resolveConfig(base)).toMatchObject({ model: { prompts: 'datp', objective: 'mpfgvc' }, promptTemplate: 'a photo of a {class}, a type of {superCategory}.' });
  });

  it('refuses what would give NaN or could not be meant: zero std, temperature 0, wrong types, unknown keys', () => {
    const base = config(join(temp, 'cfg'));
    expect(() => resolveConfig({ ...base, normalization: { mean: [0.5, 0.5, 0.5], std: [0.5, 0, 0.5] } })).toThrow('config: normalization.std[1]: expected more than 0, got 0');
    expect(() => resolveConfig({ ...base, model: { ...base.model, temperature: 0 } })).toThrow('config: model.temperature: expected more than 0, got 0');
    expect(() => resolveConfig({ ...base, stage1: { batchSize: '8' as unknown as number } })).toThrow('config: stage1.batchSize: expected a number, got "8"');
    expect(() => resolveConfig({ ...base, strict: 'false' as unknown as boolean })).toThrow('config: strict: expected true or false, got "false"');
    expect(() => resolveConfig({ ...base, stageOne: {} } as TrainConfigInput)).toThrow("config: unknown key 'stageOne'");
    expect(() => resolveConfig({ ...base, data: { kind: 'disk' } as unknown as TrainConfigInput['data'] })).toThrow('config: data.kind: matches none of the accepted forms, got "disk"');
  });
});
