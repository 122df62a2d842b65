// The classifier API in Node: the same image as a path, its bytes and its pixels gives the same
// answer; the answer is the model's own forward pass; class names and normalisation come from the
// file and can be overridden; misuse is a ClassifierError.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng, noGrad, requestDevice, softmax, tensor } from '@mpfgvc/kernels';
import { DEMO_MODEL, MPFGVC } from '@mpfgvc/model';
import { decodeRgb } from '../images/decode.js';
import { INCEPTION_NORMALIZATION } from '../images/normalize.js';
import { encodePng } from '../synth/png.js';
import { birdClasses, generateBird } from '../synth/birds.js';
import { ClassifierError } from './classifier.js';
import { ImageInputError, loadClassifier } from './node.js';

let dev: Device;
let dir: string;
const classes = birdClasses(3).map((c) => c.name);

beforeAll(async () => {
  dev = await requestDevice();
  dir = mkdtempSync(join(tmpdir(), 'mpfgvc-classifier-'));
  const model = new MPFGVC(dev, new Rng(7), { ...DEMO_MODEL, numClasses: 3, superCategory: 'bird' }, { classIds: [0], sot: 1, eot: 2 });
  model.info = { classes };
  writeFileSync(join(dir, 'model.safetensors'), await model.save());
  model.dispose();
  writeFileSync(join(dir, 'bird.png'), await encodePng(generateBird(0, birdClasses(3)[1]!, 0, 48).rgb, 48, 48));
});

afterAll(() => {
  dev.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('loadClassifier', () => {
  it('a path, its bytes and its pixels classify alike, as the model predicts on the crop', async () => {
    const c = await loadClassifier(join(dir, 'model.safetensors'), { device: dev, batch: 2 });
    expect(c.classes).toEqual(classes);
    const path = join(dir, 'bird.png');
    const px = await decodeRgb(path);
    const rgba = new Uint8ClampedArray(px.width * px.height * 4);
    for (let i = 0; i < px.width * px.height; i++) rgba.set([...px.data.subarray(3 * i, 3 * i + 3), 255], 4 * i);
    const [a, b, d] = await c.classify([path, readFileSync(path), { data: rgba, width: px.width, height: px.height }], { topK: 2 });
    expect(b!.probs).toEqual(a!.probs);
    expect(d!.probs).toEqual(a!.probs);
    expect(a!.top).toHaveLength(2);
    expect(a!.top[0]!.p).toBeGreaterThanOrEqual(a!.top[1]!.p);
    expect(a!.heads.ensemble).toEqual(a!.top);
    // The vision head's probabilities are the softmax of the model's own logits on the crop.
    const { chw } = await c.crop(path);
    const S = c.imageSize;
    const out = c.model.predict(tensor(dev, chw, [1, 3, S, S]), noGrad(() => c.model.textFeatures()));
    const want = Array.from(await noGrad(() => softmax(out.vision)).read());
    a!.probs.vision!.forEach((p, i) => expect(p).toBeCloseTo(want[i]!, 6));
    const ex = await c.explain(path);
    expect(ex.selected).toHaveLength(c.model.config.selectK);
    expect(ex.crop).toHaveLength(S * S * 3);
    const [e] = await c.embed([path]);
    expect(e).toHaveLength(c.model.config.embedDim);
    expect(await c.classEmbeddings()).toHaveLength(3);
    c.dispose();
    await expect(c.classify([path])).rejects.toThrow(/disposed/);
  });

  it('options override the file: names, normalisation', async () => {
    const c = await loadClassifier(join(dir, 'model.safetensors'), { device: dev, classes: ['a', 'b', 'c'], normalization: INCEPTION_NORMALIZATION });
    const [r] = await c.classify([join(dir, 'bird.png')]);
    expect(['a', 'b', 'c']).toContain(r!.top[0]!.name);
    expect(c.normalization).toEqual(INCEPTION_NORMALIZATION);
    c.dispose();
  });

  it('misuse and bad inputs are named errors', async () => {
    await expect(loadClassifier(join(dir, 'nothing.safetensors'), { device: dev })).rejects.toThrow(ClassifierError);
    await expect(loadClassifier(join(dir, 'bird.png'), { device: dev })).rejects.toThrow(/^checkpoint .*bird\.png: /);
    await expect(loadClassifier(join(dir, 'model.safetensors'), { device: dev, classes: ['x'] })).rejects.toThrow(/1 names for a model of 3 classes/);
    const c = await loadClassifier(join(dir, 'model.safetensors'), { device: dev });
    const missing = await c.classify([join(dir, 'no.png')]).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ImageInputError);
    expect((missing as ImageInputError).missing).toBe(true);
    await expect(c.classify([new Uint8Array([1, 2, 3])])).rejects.toThrow(/cannot read it/);
    await expect(c.classify([{ data: new Uint8Array(10), width: 2, height: 2 }])).rejects.toThrow(/expected RGB \(12\) or RGBA \(16\)/);
    // A crop that gives non-finite outputs is named by its path, else by its position.
    const nan = new Float32Array(3 * c.imageSize * c.imageSize).fill(Number.NaN);
    const fine = (await c.crop(join(dir, 'bird.png'))).chw;
    await expect(c.classifyCrops([{ chw: fine }, { chw: nan, name: 'odd.png' }], 1)).rejects.toThrow(/non-finite outputs for odd\.png;/);
    await expect(c.classifyCrops([{ chw: fine }, { chw: nan }], 1, 4)).rejects.toThrow(/non-finite outputs for input 6;/);
    c.dispose();
  });
});
