import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng, backward, crossEntropy, scope, tensor } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import { VLFM, parseSafetensors, readF32, readI32 } from './index.js';

const fixture = parseSafetensors(readFileSync(fileURLToPath(new URL('../fixtures/vlfm.safetensors', import.meta.url))), 'vlfm.safetensors');
const get = (k: string) => readF32(fixture, k);
const shape = (k: string) => fixture.tensors.get(k)!.shape;

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

describe('VLFM against PyTorch (1x1-conv formulation)', () => {
  it('logits, loss and every gradient match', async () => {
    const [B, D] = shape('input.image') as [number, number];
    const C = shape('input.text')[0]!;
    const vlfm = new VLFM(dev, new Rng(0), D, C);
    vlfm.load((name, s) => (fixture.tensors.has(`param.${name}`) ? readF32(fixture, `param.${name}`, s) : undefined), 'vlfm.safetensors');
    const image = tensor(dev, get('input.image'), [B, D], { requiresGrad: true });
    const text = tensor(dev, get('input.text'), [C, D], { requiresGrad: true });
    const labels = readI32(fixture, 'input.labels');
    const { logits, loss } = scope(() => {
      const logits = vlfm.forward(image, text);
      return { logits, loss: crossEntropy(logits, labels) };
    });
    assertClose(await logits.read(), get('output.logits'), { atol: 1e-5, rtol: 1e-4 }, 'logits');
    expect(await loss.item()).toBeCloseTo(get('output.loss')[0]!, 5);
    backward(loss);
    assertClose(await image.grad!.read(), get('grad.image'), { atol: 1e-6, rtol: 1e-3 }, 'grad image');
    assertClose(await text.grad!.read(), get('grad.text'), { atol: 1e-6, rtol: 1e-3 }, 'grad text');
    for (const [name, t] of vlfm.namedParameters()) assertClose(await t.grad!.read(), get(`grad.${name}`), { atol: 1e-6, rtol: 1e-3 }, `grad ${name}`);
  });
});
