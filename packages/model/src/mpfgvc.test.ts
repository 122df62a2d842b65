import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW, type Device, Rng, backward, noGrad, tensor } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, parseSafetensors, readF32, serializeSafetensors } from './index.js';

const tokenizer = ClipTokenizer.fromJson(JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/tokenizer-clip-tiny.json', import.meta.url)), 'utf8')));

const CONFIG: MPFGVCConfig = {
  vision: { imageSize: 16, patchSize: 4, width: 16, depth: 3, heads: 2, mlpRatio: 2, activation: 'gelu', preNorm: false, layerNormEps: 1e-6, channels: 3 },
  text: { vocabSize: tokenizer.vocabSize, contextLength: 16, width: 16, depth: 2, heads: 2, mlpRatio: 2, activation: 'quick_gelu', layerNormEps: 1e-5 },
  embedDim: 12,
  numClasses: 4,
  selectK: 5,
  promptLength: 3,
  superCategory: 'bird',
  temperature: 0.07,
  visionHeadOn: 'embedding',
};

const tokens = { classIds: tokenizer.encode(CONFIG.superCategory), sot: tokenizer.sot, eot: tokenizer.eot };

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

function batch(rng: Rng, b: number) {
  const s = CONFIG.vision.imageSize;
  return { images: tensor(dev, rng.normal(b * 3 * s * s), [b, 3, s, s]), labels: Int32Array.from({ length: b }, (_, i) => i % CONFIG.numClasses) };
}

describe('MP-FGVC', () => {
  it('stage 1 trains the image side and the prompts, never the text encoder or VLFM', async () => {
    const model = new MPFGVC(dev, new Rng(3), CONFIG, tokens);
    model.setStage(1);
    const { images, labels } = batch(new Rng(4), 8);
    const out = model.stageOne(images, labels);
    expect(out.visionLogits.shape).toEqual([8, 4]);
    expect(out.textLogits.shape).toEqual([8, 4]);
    expect(out.selected!.shape).toEqual([8, 5]);
    const l = await out.loss.item();
    expect(l).toBeCloseTo((await out.lossVision.item()) + (await out.lossText.item()), 5);
    backward(out.loss);
    const trained = new Set(model.trainable(1));
    for (const [name, t] of model.namedParameters()) {
      if (trained.has(t)) expect(t.grad, name).not.toBeNull();
      else expect(t.grad, name).toBeNull();
    }
    expect(model.datp!.prompts.grad).not.toBeNull();
  });

  it('both stages lower their losses on a fixed batch', async () => {
    const model = new MPFGVC(dev, new Rng(5), CONFIG, tokens);
    const { images, labels } = batch(new Rng(6), 8);
    model.setStage(1);
    const opt1 = new AdamW(model.trainable(1), { lr: 3e-3, weightDecay: 0 });
    const first: number[] = [];
    for (let i = 0; i < 25; i++) {
      const { loss } = model.stageOne(images, labels);
      backward(loss);
      opt1.step();
      opt1.zeroGrad();
      if (i === 0 || i === 24) first.push(await loss.item());
      loss.dispose();
    }
    expect(first[1]!).toBeLessThan(0.7 * first[0]!);
    model.setStage(2);
    const text = noGrad(() => model.textFeatures());
    const opt2 = new AdamW(model.trainable(2), { lr: 3e-3, weightDecay: 0 });
    const second: number[] = [];
    for (let i = 0; i < 25; i++) {
      const { loss } = model.stageTwo(images, labels, text);
      backward(loss);
      opt2.step();
      opt2.zeroGrad();
      if (i === 0 || i === 24) second.push(await loss.item());
      loss.dispose();
    }
    expect(second[1]!).toBeLessThan(0.7 * second[0]!);
    expect(model.vision.parameters().every((t) => t.grad === null)).toBe(true);
  });

  it('save and load round-trip exactly', async () => {
    const model = new MPFGVC(dev, new Rng(7), CONFIG, tokens);
    const { images } = batch(new Rng(8), 3);
    const text = noGrad(() => model.textFeatures());
    const before = model.predict(images, text);
    const bytes = await model.save();
    const loaded = MPFGVC.load(dev, bytes, 'round-trip.safetensors');
    expect(loaded.config).toEqual({ ...CONFIG, prompts: 'datp', objective: 'mpfgvc' });
    const after = loaded.predict(images, noGrad(() => loaded.textFeatures()));
    for (const head of ['vision', 'text', 'vlfm', 'ensemble'] as const) {
      assertClose(await after[head]!.read(), await before[head]!.read(), { atol: 0, rtol: 0 }, head);
    }
    expect(Array.from(await after.selected!.read())).toEqual(Array.from(await before.selected!.read()));
  });

  it('a checkpoint with a wrong shape or a missing key fails naming it', async () => {
    const st = parseSafetensors(await new MPFGVC(dev, new Rng(9), CONFIG, tokens).save(), 'ckpt');
    const rebuild = (edit: (name: string, shape: number[], data: Float32Array) => [number[], Float32Array] | null) => {
      const entries: Parameters<typeof serializeSafetensors>[0] = {};
      for (const [name, e] of st.tensors) {
        const r = edit(name, e.shape, readF32(st, name));
        if (r) entries[name] = { dtype: 'F32', shape: r[0], data: r[1] };
      }
      return serializeSafetensors(entries, st.metadata);
    };
    const wrongShape = rebuild((name, shape, data) => (name === 'vision_head.weight' ? [[shape[0]! - 1, shape[1]!], data.subarray(shape[1]!)] : [shape, data]));
    expect(() => MPFGVC.load(dev, wrongShape, 'bad.safetensors')).toThrow("bad.safetensors: tensor 'vision_head.weight' has shape [3, 16], expected [4, 16]");
    const missing = rebuild((name, shape, data) => (name === 'vlfm.head.bias' ? null : [shape, data]));
    expect(() => MPFGVC.load(dev, missing, 'bad.safetensors')).toThrow("bad.safetensors: missing 1 parameter(s): 'vlfm.head.bias'");
    expect(() => MPFGVC.load(dev, serializeSafetensors({}, { format: 'other' }), 'x.safetensors')).toThrow(/x.safetensors: not an MP-FGVC checkpoint/);
  });
});
