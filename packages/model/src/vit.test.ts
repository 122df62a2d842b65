import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng, backward, noGrad, tensor, zeroGrad } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import { TEST_MODEL, type ViTConfig, VisionTransformer, parseSafetensors, readF32, vitConfigFromCheckpoint, vitWeightSource } from './index.js';

// Golden values from scripts/vit_fixtures.py (plain torch, float64 on float32 weights).
const fixture = (name: string) => parseSafetensors(new Uint8Array(readFileSync(new URL(`../fixtures/${name}`, import.meta.url))), name);

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

interface Case {
  family: 'timm' | 'hf' | 'clip';
  run: 'plain' | 'ssvp' | 'resized';
}

async function checkGolden({ family, run }: Case): Promise<void> {
  const st = fixture(`vit_${family}.safetensors`);
  const golden = fixture(`vit_${family}.golden.safetensors`);
  const meta = golden.metadata;
  const overrides: Partial<ViTConfig> = family === 'timm' ? { heads: Number(meta.heads) } : {};
  if (run === 'resized') overrides.imageSize = 48;
  const config = vitConfigFromCheckpoint(st, meta.config ? JSON.parse(meta.config) : undefined, overrides);
  const vit = new VisionTransformer(dev, new Rng(0), config);
  vit.load(vitWeightSource(st, config), st.source);
  if (run === 'resized') assertClose(await vit.posEmbed.read(), readF32(golden, 'pos_embed48'), { atol: 1e-6, rtol: 1e-5 }, 'resized pos_embed');

  const imagesKey = run === 'resized' ? 'images48' : 'images';
  const images = tensor(dev, readF32(golden, imagesKey), golden.tensors.get(imagesKey)!.shape);
  const k = run === 'plain' ? null : Number(meta.ssvp_k);
  const { embedding, selected } = vit.forward(images, { ssvpK: k });
  const want = readF32(golden, `${run}.embedding`);
  assertClose(await embedding.read(), want, { atol: 1e-5, rtol: 1e-4 }, `${family} ${run} embedding`);
  if (k) {
    const ids = golden.tensors.get(`${run}.ids`)!;
    expect(Array.from(await selected!.read())).toEqual(Array.from(new Int32Array(ids.bytes.slice().buffer)));
  } else {
    expect(selected).toBeUndefined();
  }

  const lossWeight = tensor(dev, readF32(golden, 'loss_weight'), embedding.shape);
  backward(embedding, lossWeight);
  for (const [name, p] of vit.namedParameters()) {
    const g = readF32(golden, `${run}.grad.${name}`);
    const scale = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assertClose(await p.grad!.read(), g, { atol: 1e-4 * scale, rtol: 1e-3 }, `${family} ${run} grad ${name}`);
  }
  for (const t of [images, embedding, lossWeight, selected]) t?.dispose();
  vit.dispose();
}

describe('VisionTransformer against the torch reference', () => {
  for (const family of ['timm', 'hf', 'clip'] as const) {
    for (const run of ['plain', 'ssvp'] as const) {
      it(`${family} naming, ${run}: embedding, SsVP ids and every parameter gradient`, () => checkGolden({ family, run }));
    }
  }
  it('HF naming at image 48 from a 32 checkpoint: pos_embed resized, SsVP forward and gradients', () => checkGolden({ family: 'hf', run: 'resized' }));
});

describe('VisionTransformer', () => {
  it('uses timm parameter names, norm_pre and no patch bias for a pre-norm (CLIP) tower', () => {
    const cfg: ViTConfig = { ...TEST_MODEL.vision, patchSize: 8, width: 8, depth: 2, activation: 'quick_gelu', preNorm: true, layerNormEps: 1e-5 };
    const vit = new VisionTransformer(dev, new Rng(1), cfg);
    const names = vit.namedParameters().map(([n]) => n);
    expect(names.slice(0, 5)).toEqual(['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'norm_pre.weight', 'norm_pre.bias']);
    expect(names).toContain('blocks.1.attn.qkv.weight');
    expect(names.at(-1)).toBe('norm.bias');
    const plain = new VisionTransformer(dev, new Rng(1), { ...cfg, preNorm: false });
    expect(plain.namedParameters().map(([n]) => n)).toContain('patch_embed.proj.bias');
    vit.dispose();
    plain.dispose();
  });

  it('checks the image shape and K', () => {
    const cfg: ViTConfig = { ...TEST_MODEL.vision, patchSize: 8, width: 8, depth: 2 };
    const vit = new VisionTransformer(dev, new Rng(1), cfg);
    const images = tensor(dev, new Float32Array(2 * 3 * 24 * 24), [2, 3, 24, 24]);
    expect(() => vit.forward(images)).toThrow('VisionTransformer: images [2, 3, 24, 24], expected (B, 3, 16, 16)');
    const ok = tensor(dev, new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16]);
    expect(() => vit.forward(ok)).toThrow(/ssvpK 12 needs an integer in \[1, 4\]/);
    expect(vit.forward(ok, { ssvpK: 4 }).selected!.shape).toEqual([2, 4]);
    for (const t of [images, ok]) t.dispose();
    vit.dispose();
  });

  it('holds GPU memory flat across SsVP training steps and inference', async () => {
    const cfg: ViTConfig = { ...TEST_MODEL.vision, imageSize: 24, patchSize: 8, preNorm: true };
    const vit = new VisionTransformer(dev, new Rng(3), cfg);
    const images = tensor(dev, new Rng(4).normal(2 * 3 * 24 * 24), [2, 3, 24, 24]);
    const seed = tensor(dev, new Float32Array(2 * 16).fill(1), [2, 16]);
    const step = () => {
      const { embedding, selected } = vit.forward(images, { ssvpK: 3 });
      backward(embedding, seed);
      zeroGrad(vit.parameters());
      embedding.dispose();
      selected!.dispose();
      noGrad(() => {
        const out = vit.forward(images, { ssvpK: null });
        out.embedding.dispose();
      });
    };
    step();
    await dev.sync();
    const before = dev.pool.stats();
    for (let i = 0; i < 3; i++) step();
    await dev.sync();
    const after = dev.pool.stats();
    expect(after.inUse).toBe(before.inUse);
    expect(after.buffers).toBe(before.buffers);
    for (const t of [images, seed]) t.dispose();
    vit.dispose();
  });
});
