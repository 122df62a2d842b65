// The ablation variants of MP-FGVC: hand-crafted fixed prompts instead of DaTP (their text
// features against scripts/text_fixtures.py's PyTorch encoding of the same token sequences) and
// the ViT-only baseline trained on L_v alone.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng, backward, noGrad, tensor } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, type PromptTokens, TEST_MODEL, clipTextWeights, parseSafetensors, readF32, textConfigFromWeights } from './index.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));
const st = parseSafetensors(fixture('text_clip_tiny.safetensors'), 'text_clip_tiny.safetensors');
const tok = ClipTokenizer.fromJson(JSON.parse(fixture('tokenizer-clip-tiny.json').toString('utf8')));
const spec = textConfigFromWeights(st, { heads: 4 });
// The fixture's two texts, tokenised to different lengths: two classes' fixed prompts.
const TEXTS = ['a photo of a red-winged blackbird.', 'A Photo of Baklava!'];

const BASE: MPFGVCConfig = { ...TEST_MODEL, vision: { ...TEST_MODEL.vision, depth: 2 }, text: spec.text, embedDim: spec.embedDim, numClasses: 2, selectK: 4, superCategory: 'bird' };
const TOKENS: PromptTokens = { classIds: tok.encode('bird'), sot: tok.sot, eot: tok.eot, classPrompts: TEXTS.map((t) => tok.encode(t)) };

let dev: Device;
const made: MPFGVC[] = [];
beforeAll(async () => {
  dev = await testDevice();
});
afterAll(() => made.forEach((m) => m.dispose()));

function model(over: Partial<MPFGVCConfig>, tokens = TOKENS, seed = 1): MPFGVC {
  const m = new MPFGVC(dev, new Rng(seed), { ...BASE, ...over }, tokens);
  m.text.load(clipTextWeights(st), st.source);
  made.push(m);
  return m;
}

function batch(seed: number, b: number) {
  const s = BASE.vision.imageSize;
  return { images: tensor(dev, new Rng(seed).normal(b * 3 * s * s), [b, 3, s, s]), labels: Int32Array.from({ length: b }, (_, i) => i % 2) };
}

/** Exactly `trained` have gradients after a backward; every other parameter none. */
function expectGradsOn(m: MPFGVC, trained: Set<unknown>) {
  for (const [name, t] of m.namedParameters()) {
    if (trained.has(t)) expect(t.grad, name).not.toBeNull();
    else expect(t.grad, name).toBeNull();
  }
}

describe('fixed prompts (w/o DaTP)', () => {
  it("T is the text encoder's encoding of each class's [SOT, prompt, EOT] (PyTorch reference)", async () => {
    const m = model({ prompts: 'fixed' });
    expect(m.datp).toBeUndefined();
    expect(m.namedParameters().some(([n]) => n.startsWith('datp.'))).toBe(false);
    const T = m.textFeatures();
    expect(T.shape).toEqual([2, spec.embedDim]);
    expect(T.requiresGrad).toBe(false);
    const want = readF32(st, 'batch.text_embeds');
    const scale = want.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    assertClose(await T.read(), want, { atol: 1e-4 * scale, rtol: 1e-4 }, 'T of the fixed prompts');
    T.dispose();
  });

  it('stage 1 trains the image side against the fixed T; a given T gives the same losses', async () => {
    const m = model({ prompts: 'fixed' });
    m.setStage(1);
    const trained = new Set(m.trainable(1));
    expect(trained.size).toBe(m.vision.parameters().length + 3);
    expect([m.visualProjection, m.headWeight, m.headBias].every((t) => trained.has(t))).toBe(true);
    const { images, labels } = batch(2, 4);
    const out = m.stageOne(images, labels);
    backward(out.loss);
    expectGradsOn(m, trained);
    const T = m.textFeatures();
    const again = noGrad(() => m.stageOne(images, labels, { text: T }));
    expect(await again.lossText.item()).toBe(await out.lossText.item());
    expect(await again.loss.item()).toBe(await out.loss.item());
    T.dispose();
    const datp = model({});
    const Td = noGrad(() => datp.textFeatures());
    expect(() => datp.stageOne(images, labels, { text: Td })).toThrow('stageOne: DaTP prompts train in stage 1, so T cannot be given');
  });

  it('needs one prompt per class that fits the context and the vocabulary', () => {
    const make = (tokens: PromptTokens, over: Partial<MPFGVCConfig> = {}) => () => new MPFGVC(dev, new Rng(0), { ...BASE, prompts: 'fixed', ...over }, tokens);
    const { classPrompts: _, ...noPrompts } = TOKENS;
    expect(make(noPrompts)).toThrow('fixed prompts: PromptTokens.classPrompts must hold one prompt per class (2), got null');
    expect(make({ ...TOKENS, classPrompts: [[1]] })).toThrow('must hold one prompt per class (2), got 1');
    expect(make(TOKENS, { text: { ...spec.text, contextLength: 6 } })).toThrow(/fixed prompts: class 0's prompt has \d+ tokens with SOT and EOT, beyond the text context length 6/);
    expect(make({ ...TOKENS, classPrompts: [[1], [spec.text.vocabSize]] })).toThrow(`fixed prompts: class 1's prompt holds token id ${spec.text.vocabSize}, outside the text vocabulary [0, ${spec.text.vocabSize})`);
    expect(make(TOKENS, { prompts: 'learned' as 'datp' })).toThrow(`model config: prompts: expected one of "datp", "fixed", got "learned"`);
    expect(make(TOKENS, { objective: 'text' as 'vision' })).toThrow(`model config: objective: expected one of "mpfgvc", "vision", got "text"`);
  });
});

describe('ViT only (objective vision)', () => {
  it('trains the image encoder and its head on L_v alone, predicts with the vision head, has no stage 2', async () => {
    const m = model({ objective: 'vision' });
    expect(m.heads).toEqual(['vision']);
    m.setStage(1);
    const trained = new Set(m.trainable(1));
    expect(trained.size).toBe(m.vision.parameters().length + 2);
    const { images, labels } = batch(3, 4);
    const out = m.stageOneVision(images, labels);
    expect(out.selected!.shape).toEqual([4, 4]);
    backward(out.loss);
    expectGradsOn(m, trained);
    const p = m.predict(images);
    expect(Object.keys(p).sort()).toEqual(['selected', 'vision']);
    assertClose(await p.vision.read(), await out.visionLogits.read(), { atol: 0, rtol: 0 }, 'predicted vs trained ŷ_1');
    const named = m.stageOneLoss(images, labels);
    expect(Object.keys(named)).toEqual(['total', 'vision']);
    expect(named.vision).toBe(named.total);
    expect(await named.total.item()).toBe(await out.loss.item());
    expect(() => m.trainable(2)).toThrow("the ViT-only model (objective 'vision') has no stage 2");
    expect(() => m.stageTwoLoss({ images }, labels, p.vision)).toThrow("stageTwo: the ViT-only model (objective 'vision') has no stage 2");
    expect(() => m.stageOne(images, labels)).toThrow(/stageOne: the ViT-only model/);
    expect(() => model({}).predict(images)).toThrow('predict: give T');
    // A head on V: L_v reaches the visual projection, which then trains too.
    const onV = model({ objective: 'vision', visionHeadOn: 'projection' });
    expect(onV.trainable(1)).toContain(onV.visualProjection);
  });
});

describe('save and load', () => {
  it('keep the prompt mode, the objective and the class prompts; predictions round-trip exactly', async () => {
    for (const over of [{ prompts: 'fixed' }, { prompts: 'fixed', objective: 'vision' }] as Partial<MPFGVCConfig>[]) {
      const m = model(over, TOKENS, 5);
      const { images } = batch(6, 3);
      const T = m.textFeatures();
      const before = m.predict(images, T);
      const loaded = MPFGVC.load(dev, await m.save(), 'variant.safetensors');
      made.push(loaded);
      expect(loaded.config).toEqual({ ...BASE, prompts: 'datp', objective: 'mpfgvc', ...over });
      expect(loaded.tokens.classPrompts).toEqual(TOKENS.classPrompts);
      const T2 = loaded.textFeatures();
      assertClose(await T2.read(), await T.read(), { atol: 0, rtol: 0 }, 'T');
      const after = loaded.predict(images, T2);
      expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
      for (const head of loaded.heads) assertClose(await after[head]!.read(), await before[head]!.read(), { atol: 0, rtol: 0 }, head);
      T.dispose();
      T2.dispose();
    }
  });
});
