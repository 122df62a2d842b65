import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW, type Device, Rng, backward, noGrad, tensor, zeroGrad } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, TEST_MODEL, parseSafetensors, readF32, serializeSafetensors } from './index.js';

const tokenizer = ClipTokenizer.fromJson(JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/tokenizer-clip-tiny.json', import.meta.url)), 'utf8')));

const CONFIG: MPFGVCConfig = { ...TEST_MODEL, text: { ...TEST_MODEL.text, vocabSize: tokenizer.vocabSize }, numClasses: 4, superCategory: 'bird' };

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

  it('names the losses of each objective; stage 2 on V computed before equals stage 2 on the images', async () => {
    const model = new MPFGVC(dev, new Rng(10), CONFIG, tokens);
    const { images, labels } = batch(new Rng(11), 6);
    model.setStage(1);
    const one = model.stageOneLoss(images, labels, { labelSmoothing: 0.1 });
    expect(Object.keys(one)).toEqual(['total', 'vision', 'text']);
    expect(await one.total.item()).toBeCloseTo((await one.vision!.item()) + (await one.text!.item()), 5);
    model.setStage(2);
    const text = noGrad(() => model.textFeatures());
    const fromImages = model.stageTwoLoss({ images }, labels, text, { labelSmoothing: 0.1 });
    expect(Object.keys(fromImages)).toEqual(['total', 'vlfm']);
    expect(fromImages.vlfm).toBe(fromImages.total);
    backward(fromImages.total);
    const params = model.trainable(2);
    const gradsFromImages = await Promise.all(params.map((t) => t.grad!.read()));
    zeroGrad(params);
    const joint = noGrad(() => model.encodeImages(images).joint);
    const fromJoint = model.stageTwoLoss({ joint }, labels, text, { labelSmoothing: 0.1 });
    expect(await fromJoint.total.item()).toBe(await fromImages.total.item());
    backward(fromJoint.total);
    for (const [i, t] of params.entries()) assertClose(await t.grad!.read(), gradsFromImages[i]!, { atol: 0, rtol: 0 }, t.name);
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

  describe('a crafted or damaged model file', () => {
    /** The saved model with its metadata configuration (and tokens) edited, tensors unchanged. */
    const withMetadata = async (edit: (config: Record<string, any>, tokens: Record<string, any>) => void) => {
      const st = parseSafetensors(await new MPFGVC(dev, new Rng(9), CONFIG, tokens).save(), 'ckpt');
      const config = JSON.parse(st.metadata.config!);
      const tok = JSON.parse(st.metadata.tokens!);
      edit(config, tok);
      const entries: Parameters<typeof serializeSafetensors>[0] = {};
      for (const [name, e] of st.tensors) entries[name] = { dtype: 'F32', shape: e.shape, data: readF32(st, name) };
      return serializeSafetensors(entries, { ...st.metadata, config: JSON.stringify(config), tokens: JSON.stringify(tok) });
    };

    it('asks for no more than the file holds: depth 1e6 or width 1e9 fail at once, naming the key', async () => {
      const started = performance.now();
      const deep = await withMetadata((c) => (c.vision.depth = 1e6));
      expect(() => MPFGVC.load(dev, deep, 'deep.safetensors')).toThrow('deep.safetensors: metadata config: vision.depth: expected at most 256, got 1000000');
      const wide = await withMetadata((c) => (c.text.width = 1e9));
      expect(() => MPFGVC.load(dev, wide, 'wide.safetensors')).toThrow('wide.safetensors: metadata config: text.width: expected at most 16384, got 1000000000');
      // Within the limits but beyond the tensors: the pinned shapes refuse it before anything is built.
      const classes = await withMetadata((c) => (c.numClasses = 90_000));
      expect(() => MPFGVC.load(dev, classes, 'c.safetensors')).toThrow("c.safetensors: tensor 'vision_head.bias' has shape [4], but the configuration in the metadata needs [90000]");
      // Depth is not pinned by a shape: the parameter budget stops the build long before 200 blocks.
      const blocks = await withMetadata((c) => (c.vision.depth = 200));
      expect(() => MPFGVC.load(dev, blocks, 'b.safetensors')).toThrow(/b.safetensors: its configuration asks for more parameters than the file holds/);
      expect(performance.now() - started).toBeLessThan(5000);
    });

    it('refuses token ids outside the vocabulary and values that make probabilities NaN', async () => {
      const V = CONFIG.text.vocabSize;
      const ids = await withMetadata((_c, t) => (t.classIds = [7, V + 721, V + 722]));
      expect(() => MPFGVC.load(dev, ids, 'ids.safetensors')).toThrow(`ids.safetensors: tokens.classIds holds id ${V + 721}, outside the text vocabulary [0, ${V})`);
      const cold = await withMetadata((c) => (c.temperature = 0));
      expect(() => MPFGVC.load(dev, cold, 't.safetensors')).toThrow('t.safetensors: metadata config: temperature: expected more than 0, got 0');
      const eps = await withMetadata((c) => (c.vision.layerNormEps = -1e-6));
      expect(() => MPFGVC.load(dev, eps, 'e.safetensors')).toThrow('e.safetensors: metadata config: vision.layerNormEps: expected more than 0, got -0.000001');
      expect(() => new MPFGVC(dev, new Rng(0), CONFIG, { ...tokens, sot: CONFIG.text.vocabSize })).toThrow(`tokens.sot holds id ${CONFIG.text.vocabSize}, outside the text vocabulary`);
    });

    it('refuses weights that hold NaN or infinity, naming the tensor, unless asked to load them', async () => {
      const st = parseSafetensors(await new MPFGVC(dev, new Rng(9), CONFIG, tokens).save(), 'ckpt');
      const entries: Parameters<typeof serializeSafetensors>[0] = {};
      for (const [name, e] of st.tensors) {
        const data = readF32(st, name);
        if (name === 'vlfm.q.weight') data[5] = NaN;
        entries[name] = { dtype: 'F32', shape: e.shape, data };
      }
      const bytes = serializeSafetensors(entries, st.metadata);
      expect(() => MPFGVC.load(dev, bytes, 'nan.safetensors')).toThrow("nan.safetensors: tensor 'vlfm.q.weight' holds NaN at index 5; the model diverged or the file is damaged");
      const model = MPFGVC.load(dev, bytes, 'nan.safetensors', { allowNonFinite: true });
      expect(model.config.numClasses).toBe(4);
      model.dispose();
    });
  });
});
