import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng, noGrad, tensor } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, type ModelPreset, TEST_MODEL, VisionTransformer, parseSafetensors, readF32, vitWeightSource } from '@mpfgvc/model';
import { loadPretrained, openCheckpointFolder, openVisionFolder, resolvePretrained, train, writeCubLayout } from './index.js';

const fixtures = fileURLToPath(new URL('../../model/fixtures/', import.meta.url));
const tokenizer = ClipTokenizer.fromJson(JSON.parse(readFileSync(join(fixtures, 'tokenizer-clip-tiny.json'), 'utf8')));

/** A Hub-style folder: model.safetensors plus config.json. */
function folder(weights: string, config?: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
  copyFileSync(join(fixtures, weights), join(dir, 'model.safetensors'));
  if (config) writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

/** The model before the checkpoints' shapes replace its towers. */
const MODEL: ModelPreset = {
  ...TEST_MODEL,
  vision: { ...TEST_MODEL.vision, imageSize: 48, patchSize: 16, width: 8, depth: 2, heads: 1 },
  text: { ...TEST_MODEL.text, vocabSize: 10, width: 8, depth: 1, heads: 1 },
  embedDim: 8,
  selectK: 2,
  promptLength: 2,
};
const BASE: MPFGVCConfig = { ...MODEL, numClasses: 3, superCategory: 'bird' };

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

describe('pretrained initialisation', () => {
  it('takes the towers from HF ViT and CLIP folders and loads them into MP-FGVC', async () => {
    const golden = parseSafetensors(readFileSync(join(fixtures, 'vit_hf.golden.safetensors')), 'golden');
    const vitDir = folder('vit_hf.safetensors', JSON.parse(golden.metadata.config!));
    const textSt = parseSafetensors(readFileSync(join(fixtures, 'text_clip_tiny.safetensors')), 'text');
    const width = textSt.tensors.get('text_model.embeddings.token_embedding.weight')!.shape[1]!;
    const embedDim = textSt.tensors.get('text_projection.weight')!.shape[0]!;
    const textDir = folder('text_clip_tiny.safetensors', {
      projection_dim: embedDim,
      text_config: { hidden_size: width, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 4 * width, vocab_size: tokenizer.vocabSize, max_position_embeddings: 77 },
    });
    const p = resolvePretrained({ vision: vitDir, text: textDir }, BASE);
    expect(p.config.vision).toMatchObject({ width: 32, depth: 3, heads: 4, patchSize: 8, imageSize: 48 });
    expect(p.config.text).toMatchObject({ width, depth: 2, heads: 4 });
    expect(p.config.embedDim).toBe(embedDim);
    expect(p.preprocessing).toBeDefined();

    const model = new MPFGVC(dev, new Rng(1), p.config, { classIds: tokenizer.encode('bird'), sot: tokenizer.sot, eot: tokenizer.eot });
    loadPretrained(model, p);
    // The image encoder equals a ViT loaded straight from the same checkpoint.
    const vit = new VisionTransformer(dev, new Rng(2), p.config.vision);
    vit.load(vitWeightSource(p.vision!.weights, p.config.vision), 'direct');
    const images = tensor(dev, new Rng(3).normal(2 * 3 * 48 * 48), [2, 3, 48, 48]);
    const a = noGrad(() => model.vision.forward(images, { ssvpK: null }).embedding);
    const b = noGrad(() => vit.forward(images, { ssvpK: null }).embedding);
    assertClose(await a.read(), await b.read(), { atol: 0, rtol: 0 }, 'E_V');
    const tok = (await model.text.stateDict()).get('text_model.embeddings.token_embedding.weight')!;
    assertClose(tok.data, readF32(textSt, 'text_model.embeddings.token_embedding.weight'), { atol: 0, rtol: 0 }, 'token embedding');
  });

  it('a training run starts from the checkpoints and records their shapes in its config', async () => {
    const golden = parseSafetensors(readFileSync(join(fixtures, 'vit_hf.golden.safetensors')), 'golden');
    const vitDir = folder('vit_hf.safetensors', JSON.parse(golden.metadata.config!));
    // As google/vit-base-patch16-224-in21k ships it: mean and std 0.5.
    writeFileSync(join(vitDir, 'preprocessor_config.json'), JSON.stringify({ image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], size: { height: 224, width: 224 } }));
    const data = mkdtempSync(join(tmpdir(), 'pre-data-'));
    await writeCubLayout(join(data, 'cub'), { numClasses: 2, trainPerClass: 2, testPerClass: 1, size: 32, seed: 1 });
    const out = join(data, 'run');
    await train(
      {
        outDir: out,
        data: { kind: 'folder', root: join(data, 'cub'), workers: 0 },
        model: MODEL,
        tokenizer: join(fixtures, 'tokenizer-clip-tiny.json'),
        pretrained: { vision: vitDir },
        stage1: { epochs: 0 },
        stage2: { epochs: 0 },
      },
      { device: dev, log: () => undefined },
    );
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(saved.model.vision).toMatchObject({ width: 32, depth: 3, heads: 4, imageSize: 48 });
    expect(saved.normalization).toEqual({ mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    const model = MPFGVC.load(dev, new Uint8Array(readFileSync(join(out, 'model.safetensors'))), 'model');
    const want = new VisionTransformer(dev, new Rng(2), saved.model.vision);
    want.load(vitWeightSource(parseSafetensors(readFileSync(join(vitDir, 'model.safetensors')), 'vit'), saved.model.vision), 'direct');
    const got = await model.vision.stateDict();
    for (const [name, v] of await want.stateDict()) assertClose(got.get(name)!.data, v.data, { atol: 0, rtol: 0 }, name);
  });

  it("a folder's own statistics set the preprocessing: preprocessor_config.json, else config.json's pretrained_cfg (timm), as features reads them", () => {
    const golden = parseSafetensors(new Uint8Array(readFileSync(join(fixtures, 'vit_hf.golden.safetensors'))), 'golden');
    const cfg = JSON.parse(golden.metadata.config!) as Record<string, unknown>;
    const timmStyle = folder('vit_hf.safetensors', { ...cfg, pretrained_cfg: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } });
    expect(resolvePretrained({ vision: timmStyle }, BASE).preprocessing).toMatchObject({ mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    expect(openVisionFolder(timmStyle).preprocessing).toEqual(resolvePretrained({ vision: timmStyle }, { ...BASE, vision: { ...BASE.vision, imageSize: openVisionFolder(timmStyle).config.imageSize } }).preprocessing);
    writeFileSync(join(timmStyle, 'preprocessor_config.json'), JSON.stringify({ image_mean: [0.4, 0.4, 0.4], image_std: [0.2, 0.2, 0.2] }));
    expect(resolvePretrained({ vision: timmStyle }, BASE).preprocessing).toMatchObject({ mean: [0.4, 0.4, 0.4], std: [0.2, 0.2, 0.2] });
  });

  it('names the folder at fault', () => {
    const empty = mkdtempSync(join(tmpdir(), 'ckpt-'));
    expect(() => openCheckpointFolder(empty)).toThrow(`${empty}: no *.safetensors file`);
    expect(() => openCheckpointFolder(join(empty, 'nope'))).toThrow(/nope: no such folder/);
    mkdirSync(join(empty, 'x'));
    writeFileSync(join(empty, 'a.safetensors'), '');
    writeFileSync(join(empty, 'b.safetensors'), '');
    expect(() => openCheckpointFolder(empty)).toThrow(/several \*\.safetensors files \(a.safetensors, b.safetensors\)/);
  });
});
