// The assembled MP-FGVC against scripts/mpfgvc_fixtures.py: timm ViT + SsVP, CLIP text tower under
// DaTP prompts and VLFM from independent float64 PyTorch pieces. Both stages' losses, every head's
// logits, SsVP's ids and the gradient of every parameter each stage trains.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng, backward, noGrad, tensor } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import { MPFGVC, type MPFGVCConfig, type PromptTokens, parseSafetensors, readF32, readI32 } from './index.js';

const st = parseSafetensors(readFileSync(new URL('../fixtures/mpfgvc.safetensors', import.meta.url)), 'mpfgvc.safetensors');
const config = JSON.parse(st.metadata.config!) as MPFGVCConfig;
const tokens = JSON.parse(st.metadata.tokens!) as PromptTokens;
const get = (k: string) => readF32(st, k);
const FORWARD = { atol: 1e-5, rtol: 1e-4 };
const GRAD = { atol: 1e-5, rtol: 1e-3 };

let dev: Device;
let model: MPFGVC;
beforeAll(async () => {
  dev = await testDevice();
  model = new MPFGVC(dev, new Rng(0), config, tokens);
  model.load((name, shape) => (st.tensors.has(`param.${name}`) ? readF32(st, `param.${name}`, shape) : undefined), st.source);
});

const images = () => tensor(dev, get('input.images'), st.tensors.get('input.images')!.shape);
const labels = () => readI32(st, 'input.labels');

describe('MP-FGVC against PyTorch', () => {
  it('stage 1: L_1, both heads, SsVP ids and every trained gradient', async () => {
    model.setStage(1);
    const out = model.stageOne(images(), labels());
    assertClose(await out.visionLogits.read(), get('output.vision_logits'), FORWARD, 'vision logits');
    assertClose(await out.textLogits.read(), get('output.text_logits'), FORWARD, 'text logits');
    expect(Array.from(await out.selected!.read())).toEqual(Array.from(readI32(st, 'output.ids')));
    assertClose([await out.loss.item()], get('output.loss1'), FORWARD, 'L_1');
    backward(out.loss);
    for (const [name, t] of model.namedParameters()) {
      if (!t.requiresGrad) continue;
      assertClose(await t.grad!.read(), get(`grad.${name}`), GRAD, `grad ${name}`);
    }
    expect(model.text.parameters().every((t) => t.grad === null)).toBe(true);
  });

  it('stage 2: L_2, VLFM logits and VLFM gradients, with the encoders and prompts frozen', async () => {
    model.setStage(2);
    const text = noGrad(() => model.textFeatures());
    const { loss, logits } = model.stageTwo(images(), labels(), text);
    assertClose(await logits.read(), get('output.vlfm_logits'), FORWARD, 'VLFM logits');
    assertClose([await loss.item()], get('output.loss2'), FORWARD, 'L_2');
    backward(loss);
    const vlfm = model.vlfm.namedParameters('vlfm.');
    for (const [name, t] of vlfm) assertClose(await t.grad!.read(), get(`grad.${name}`), GRAD, `grad ${name}`);
    // setStage(2) leaves exactly VLFM trainable: stage 1's encoder, projection, head and prompts are frozen again.
    const trainable = model.namedParameters().filter(([, t]) => t.requiresGrad).map(([name]) => name);
    expect(trainable).toEqual(vlfm.map(([name]) => name));
  });
});
