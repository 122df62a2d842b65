import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng } from '@mpfgvc/kernels';
import { testDevice } from '@mpfgvc/kernels/testing';
import {
  type Safetensors,
  VisionTransformer,
  type WriteEntry,
  detectViTFamily,
  parsePreprocessorConfig,
  parseSafetensors,
  readF32,
  serializeSafetensors,
  visualProjection,
  vitConfigFromCheckpoint,
  vitWeightSource,
} from '../index.js';

const fixture = (name: string) => parseSafetensors(new Uint8Array(readFileSync(new URL(`../../fixtures/${name}`, import.meta.url))), name);
const hfConfig = () => JSON.parse(fixture('vit_hf.golden.safetensors').metadata.config!);

/** A copy of a checkpoint with keys renamed, dropped (null) or given other values. */
function rewrite(st: Safetensors, source: string, edit: (key: string, e: WriteEntry) => [string, WriteEntry] | null): Safetensors {
  const out: Record<string, WriteEntry> = {};
  for (const [key, e] of st.tensors) {
    const r = edit(key, { dtype: 'F32', shape: e.shape, data: readF32(st, key) });
    if (r) out[r[0]] = r[1];
  }
  return parseSafetensors(serializeSafetensors(out), source);
}

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

describe('ViT checkpoint families', () => {
  it('recognises each family and its prefix', () => {
    expect(detectViTFamily(fixture('vit_timm.safetensors'))).toEqual({ family: 'timm', prefix: '' });
    expect(detectViTFamily(fixture('vit_hf.safetensors'))).toEqual({ family: 'hf-vit', prefix: '' });
    expect(detectViTFamily(fixture('vit_clip.safetensors'))).toEqual({ family: 'hf-clip', prefix: 'vision_model.' });
    const prefixed = rewrite(fixture('vit_hf.safetensors'), 'vit_prefixed', (k, e) => [`vit.${k}`, e]);
    expect(detectViTFamily(prefixed)).toEqual({ family: 'hf-vit', prefix: 'vit.' });
    const other = rewrite(fixture('vit_hf.safetensors'), 'other', (k, e) => (k.includes('cls_token') ? null : [k, e]));
    expect(() => detectViTFamily(other)).toThrow(/other: not a ViT checkpoint of a known family/);
  });

  it('reads the configuration from config.json, or infers it from the shapes', () => {
    const hf = vitConfigFromCheckpoint(fixture('vit_hf.safetensors'), hfConfig());
    expect(hf).toEqual({ imageSize: 32, patchSize: 8, width: 32, depth: 3, heads: 4, mlpRatio: 4, activation: 'gelu', preNorm: false, layerNormEps: 1e-12, channels: 3 });
    const clip = vitConfigFromCheckpoint(fixture('vit_clip.safetensors'), JSON.parse(fixture('vit_clip.golden.safetensors').metadata.config!));
    expect(clip).toMatchObject({ imageSize: 32, heads: 4, patchSize: 8, width: 32, depth: 3, mlpRatio: 4, activation: 'quick_gelu', preNorm: true, layerNormEps: 1e-5 });
    expect(vitConfigFromCheckpoint(fixture('vit_timm.safetensors'), undefined, { heads: 4, imageSize: 448 })).toMatchObject({ imageSize: 448, heads: 4, layerNormEps: 1e-6 });
    // Width 32 is no multiple of the default head width 64: the message says what to pass.
    expect(() => vitConfigFromCheckpoint(fixture('vit_timm.safetensors'))).toThrow('vit_timm.safetensors: vision.heads: expected an integer, got 0.5 (no config.json: pass the head count as an override)');
    expect(() => vitConfigFromCheckpoint(fixture('vit_hf.safetensors'), { ...hfConfig(), hidden_size: 64 })).toThrow(
      "vit_hf.safetensors config.json: hidden_size 64, but 'embeddings.patch_embeddings.projection.weight' has width 32",
    );
    expect(() => vitConfigFromCheckpoint(fixture('vit_hf.safetensors'), { ...hfConfig(), hidden_act: 'gelu_new' })).toThrow(/hidden_act "gelu_new" is not supported/);
  });

  it('loads with or without the `vit.` prefix to the same values; q/k/v become one qkv', async () => {
    const st = fixture('vit_hf.safetensors');
    const cfg = vitConfigFromCheckpoint(st, hfConfig());
    const a = new VisionTransformer(dev, new Rng(1), cfg);
    a.load(vitWeightSource(st, cfg), st.source);
    const prefixed = rewrite(st, 'vit_prefixed', (k, e) => [`vit.${k}`, e]);
    const b = new VisionTransformer(dev, new Rng(2), cfg);
    b.load(vitWeightSource(prefixed, cfg), prefixed.source);
    const sa = await a.stateDict();
    const sb = await b.stateDict();
    for (const [k, v] of sa) expect(Array.from(sb.get(k)!.data), k).toEqual(Array.from(v.data));
    const qkv = sa.get('blocks.1.attn.qkv.weight')!.data;
    expect(Array.from(qkv.subarray(32 * 32, 2 * 32 * 32))).toEqual(Array.from(readF32(st, 'encoder.layer.1.attention.attention.key.weight')));
    a.dispose();
    b.dispose();
  });

  it('names the checkpoint key of a wrong shape or a missing tensor', () => {
    const st = fixture('vit_hf.safetensors');
    const cfg = vitConfigFromCheckpoint(st, hfConfig());
    const vit = new VisionTransformer(dev, new Rng(1), cfg);
    const wrong = rewrite(st, 'wrong.safetensors', (k, e) =>
      k === 'encoder.layer.1.attention.attention.value.bias' ? [k, { ...e, shape: [31], data: e.data.subarray(0, 31) as Float32Array }] : [k, e],
    );
    expect(() => vit.load(vitWeightSource(wrong, cfg), wrong.source)).toThrow(
      "wrong.safetensors: tensor 'encoder.layer.1.attention.attention.value.bias' has shape [31], expected [32]",
    );
    const missing = rewrite(st, 'missing.safetensors', (k, e) => (k === 'encoder.layer.2.output.dense.bias' ? null : [k, e]));
    expect(() => vit.load(vitWeightSource(missing, cfg), missing.source)).toThrow(
      "missing.safetensors: missing tensor 'encoder.layer.2.output.dense.bias' (for the model's 'blocks.2.mlp.fc2.bias')",
    );
    const clip = fixture('vit_clip.safetensors');
    expect(() => vitWeightSource(clip, { ...cfg, depth: 2 })).toThrow('vit_clip.safetensors: the checkpoint has 3 blocks, the model 2');
    vit.dispose();
  });

  it("exposes CLIP's visual projection", () => {
    const p = visualProjection(fixture('vit_clip.safetensors'))!;
    expect(p.shape).toEqual([24, 32]);
    expect(p.weight.length).toBe(24 * 32);
    expect(visualProjection(fixture('vit_hf.safetensors'))).toBeUndefined();
  });
});

describe('image preprocessing', () => {
  it('defaults to ImageNet statistics for ViT and CLIP statistics for CLIP', () => {
    expect(parsePreprocessorConfig(undefined, 'hf-vit', 448)).toEqual({ size: 448, crop: 448, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    expect(parsePreprocessorConfig(undefined, 'hf-clip', 224).mean).toEqual([0.48145466, 0.4578275, 0.40821073]);
  });

  it('reads HF and timm configurations', () => {
    // google/vit-base-patch16-224-in21k
    expect(parsePreprocessorConfig({ do_normalize: true, do_resize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], size: 224 }, 'hf-vit', 448)).toEqual({
      size: 224,
      crop: 224,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
    });
    // openai/clip-vit-base-patch16, newer transformers spelling
    const clip = parsePreprocessorConfig(
      { crop_size: { height: 224, width: 224 }, size: { shortest_edge: 224 }, image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711] },
      'hf-clip',
      224,
    );
    expect(clip).toMatchObject({ size: 224, crop: 224 });
    const timm = parsePreprocessorConfig({ pretrained_cfg: { input_size: [3, 384, 384], mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } }, 'timm', 448);
    expect(timm).toEqual({ size: 384, crop: 384, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    expect(() => parsePreprocessorConfig({ image_mean: [0.5, 0.5] }, 'hf-vit', 224)).toThrow('preprocessor config: image_mean [0.5,0.5], expected three numbers');
  });
});
