// ViT checkpoints as they are published, loaded without a conversion step: timm (our own names),
// Hugging Face ViT (`google/vit-base-patch16-224-in21k`) and Hugging Face CLIP's vision tower.
// The family is recognised from the key names; the configuration comes from the checkpoint's
// config.json where there is one, else from the tensor shapes; the weight source maps each of our
// parameter names to the checkpoint's key(s), concatenating HF's separate q/k/v into qkv and
// resizing position embeddings whose grid differs from the model's.
import { type ViTConfig, type Activation, MODEL_LIMITS, validateViT } from '../config.js';
import { type WeightSource } from '../module.js';
import { resizePosEmbed, squareGrid } from '../pos-embed.js';
import { type Safetensors, WeightsError, readF32 } from './safetensors.js';

export type ViTFamily = 'timm' | 'hf-vit' | 'hf-clip';

/** Each family's CLS key (after the prefix), the key that identifies it. */
const CLS_KEY: Record<ViTFamily, string> = {
  'hf-clip': 'embeddings.class_embedding',
  'hf-vit': 'embeddings.cls_token',
  timm: 'cls_token',
};

/** What each family leaves out of its config.json, as the upstream defaults. */
const FAMILY_DEFAULTS: Record<ViTFamily, { activation: Activation; layerNormEps: number }> = {
  timm: { activation: 'gelu', layerNormEps: 1e-6 },
  'hf-vit': { activation: 'gelu', layerNormEps: 1e-12 },
  'hf-clip': { activation: 'quick_gelu', layerNormEps: 1e-5 },
};

export interface ViTCheckpointFamily {
  family: ViTFamily;
  /** What precedes the family's own names (`vit.`, `vision_model.`, or nothing). */
  prefix: string;
}

/** Recognises the checkpoint family by its CLS key; `vit.`/`vision_model.`/`module.` prefixes are allowed. */
export function detectViTFamily(st: Safetensors): ViTCheckpointFamily {
  for (const family of ['hf-clip', 'hf-vit', 'timm'] as const) {
    const suffix = CLS_KEY[family];
    for (const key of st.tensors.keys()) {
      if (key === suffix || key.endsWith(`.${suffix}`)) return { family, prefix: key.slice(0, key.length - suffix.length) };
    }
  }
  const some = [...st.tensors.keys()].slice(0, 5).map((k) => `'${k}'`);
  throw new WeightsError(
    `${st.source}: not a ViT checkpoint of a known family (no 'cls_token', 'embeddings.cls_token' or 'embeddings.class_embedding' key); keys begin ${some.join(', ')}`,
  );
}

/** The checkpoint key(s) holding our parameter `name`; three keys are concatenated along dim 0. */
function checkpointKeys(family: ViTFamily, name: string): string | [string, string, string] {
  if (family === 'timm') return name;
  const clip = family === 'hf-clip';
  const block = /^blocks\.(\d+)\.(.+)$/.exec(name);
  if (block) {
    const [, i, rest] = block as unknown as [string, string, string];
    const layer = clip ? `encoder.layers.${i}.` : `encoder.layer.${i}.`;
    const [, mod, leaf] = /^(.+)\.(weight|bias)$/.exec(rest) as unknown as [string, string, string];
    if (mod === 'attn.qkv') {
      const parts = clip ? ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] : ['attention.attention.query', 'attention.attention.key', 'attention.attention.value'];
      return parts.map((p) => `${layer}${p}.${leaf}`) as [string, string, string];
    }
    const table: Record<string, [string, string]> = {
      norm1: ['layer_norm1', 'layernorm_before'],
      'attn.proj': ['self_attn.out_proj', 'attention.output.dense'],
      norm2: ['layer_norm2', 'layernorm_after'],
      'mlp.fc1': ['mlp.fc1', 'intermediate.dense'],
      'mlp.fc2': ['mlp.fc2', 'output.dense'],
    };
    const m = table[mod];
    if (!m) throw new WeightsError(`no ${family} checkpoint name for parameter '${name}'`);
    return `${layer}${clip ? m[0] : m[1]}.${leaf}`;
  }
  // HF ViT has no pre-norm, so `norm_pre` has no name there.
  const top: Record<string, [string, string | undefined]> = {
    cls_token: ['embeddings.class_embedding', 'embeddings.cls_token'],
    pos_embed: ['embeddings.position_embedding.weight', 'embeddings.position_embeddings'],
    'patch_embed.proj.weight': ['embeddings.patch_embedding.weight', 'embeddings.patch_embeddings.projection.weight'],
    'patch_embed.proj.bias': ['embeddings.patch_embedding.bias', 'embeddings.patch_embeddings.projection.bias'],
    'norm_pre.weight': ['pre_layrnorm.weight', undefined],
    'norm_pre.bias': ['pre_layrnorm.bias', undefined],
    'norm.weight': ['post_layernorm.weight', 'layernorm.weight'],
    'norm.bias': ['post_layernorm.bias', 'layernorm.bias'],
  };
  const key = top[name]?.[clip ? 0 : 1];
  if (!key) throw new WeightsError(`no ${family} checkpoint name for parameter '${name}'`);
  return key;
}

function shapeOf(st: Safetensors, key: string, ours: string): number[] {
  const e = st.tensors.get(key);
  if (!e) throw new WeightsError(`${st.source}: missing tensor '${key}' (for the model's '${ours}')`);
  return e.shape;
}

/** The number of transformer blocks a checkpoint holds (one past the largest block index). */
function countBlocks(st: Safetensors, family: ViTFamily, prefix: string): number {
  const pattern = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${family === 'timm' ? 'blocks' : family === 'hf-clip' ? 'encoder\\.layers' : 'encoder\\.layer'}\\.(\\d+)\\.`);
  const ids = new Set<number>();
  for (const key of st.tensors.keys()) {
    const m = pattern.exec(key);
    if (m) ids.add(Number(m[1]));
  }
  // Counted, not taken from the largest number: one key 'blocks.999999.x' must not ask for a million blocks.
  const gap = [...ids].find((i) => i >= ids.size);
  if (gap !== undefined) throw new WeightsError(`${st.source}: ${ids.size} blocks, but one is numbered ${gap} (blocks must be numbered 0..${ids.size - 1})`);
  return ids.size;
}

type Json = Record<string, unknown>;

function num(cfg: Json, key: string, where: string): number | undefined {
  const v = cfg[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number') throw new WeightsError(`${where}: '${key}' is ${JSON.stringify(v)}, expected a number`);
  return v;
}

function activationOf(v: unknown, where: string): Activation | undefined {
  if (v === undefined || v === null) return undefined;
  if (v === 'gelu' || v === 'quick_gelu') return v;
  throw new WeightsError(`${where}: hidden_act ${JSON.stringify(v)} is not supported (use 'gelu' (erf) or 'quick_gelu')`);
}

/**
 * The checkpoint's own ViT configuration: width, patch, channels, depth, MLP ratio, grid and
 * pre-norm from the tensor shapes; heads, activation, eps (and image size, if it says) from the
 * HF config.json object when given (CLIP's under `vision_config`), else the family's defaults and
 * heads of width 64. `overrides` (e.g. `{ imageSize: 448 }`) win over both.
 */
export function vitConfigFromCheckpoint(st: Safetensors, configJson?: unknown, overrides: Partial<ViTConfig> = {}): ViTConfig {
  const { family, prefix } = detectViTFamily(st);
  const key = (ours: string) => {
    const k = checkpointKeys(family, ours);
    return prefix + (Array.isArray(k) ? k[0] : k);
  };
  const patchShape = shapeOf(st, key('patch_embed.proj.weight'), 'patch_embed.proj.weight');
  if (patchShape.length !== 4 || patchShape[2] !== patchShape[3]) {
    throw new WeightsError(`${st.source}: tensor '${key('patch_embed.proj.weight')}' has shape [${patchShape.join(', ')}], expected (D, C, P, P)`);
  }
  const [width, channels, patchSize] = patchShape as [number, number, number];
  const posShape = shapeOf(st, key('pos_embed'), 'pos_embed');
  const grid = squareGrid(posShape[posShape.length - 2]! - 1, `${st.source}: '${key('pos_embed')}' [${posShape.join(', ')}]`);
  const hidden = shapeOf(st, key('blocks.0.mlp.fc1.weight'), 'blocks.0.mlp.fc1.weight')[0]!;
  const depth = countBlocks(st, family, prefix);
  const preNorm = family === 'hf-clip' || (family === 'timm' && st.tensors.has(`${prefix}norm_pre.weight`));

  const where = `${st.source} config.json`;
  const raw = (configJson ?? {}) as Json;
  const cfg = (family === 'hf-clip' && raw.vision_config ? raw.vision_config : raw) as Json;
  const declared = num(cfg, 'hidden_size', where);
  if (declared !== undefined && declared !== width) {
    throw new WeightsError(`${where}: hidden_size ${declared}, but '${key('patch_embed.proj.weight')}' has width ${width}`);
  }
  const defaults = FAMILY_DEFAULTS[family];
  const heads = num(cfg, 'num_attention_heads', where) ?? width / 64;
  const config: ViTConfig = {
    imageSize: num(cfg, 'image_size', where) ?? grid * patchSize,
    patchSize,
    width,
    depth,
    heads,
    mlpRatio: hidden / width,
    activation: activationOf(cfg.hidden_act, where) ?? defaults.activation,
    preNorm,
    layerNormEps: num(cfg, 'layer_norm_eps', where) ?? defaults.layerNormEps,
    channels,
    ...overrides,
  };
  try {
    validateViT(config);
  } catch (e) {
    throw new WeightsError(`${st.source}: ${(e as Error).message}${configJson || overrides.heads ? '' : ' (no config.json: pass the head count as an override)'}`);
  }
  return config;
}

/**
 * Values for each of `VisionTransformer`'s parameters (for `Module.load`) from a checkpoint of
 * any known family, checked against the model's shapes; errors name the checkpoint key and the
 * expected and actual shapes. Position embeddings are resized bicubically when the checkpoint's
 * grid differs from `model`'s.
 */
export function vitWeightSource(st: Safetensors, model: ViTConfig): WeightSource {
  const { family, prefix } = detectViTFamily(st);
  const depth = countBlocks(st, family, prefix);
  if (depth !== model.depth) throw new WeightsError(`${st.source}: the checkpoint has ${depth} blocks, the model ${model.depth}`);
  const D = model.width;
  return (name, shape) => {
    const keys = checkpointKeys(family, name);
    if (Array.isArray(keys)) {
      const part = [shape[0]! / 3, ...shape.slice(1)];
      const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
      keys.forEach((k, i) => {
        shapeOf(st, prefix + k, name);
        out.set(readF32(st, prefix + k, part), (i * out.length) / 3);
      });
      return out;
    }
    const key = prefix + keys;
    const actual = shapeOf(st, key, name);
    if (name === 'cls_token') return readF32(st, key, family === 'hf-clip' ? [D] : [1, 1, D]);
    if (name === 'pos_embed') {
      const rows = actual[actual.length - 2]!;
      const pos = readF32(st, key, family === 'hf-clip' ? [rows, D] : [1, rows, D]);
      const side = model.imageSize / model.patchSize;
      return resizePosEmbed(pos, D, [side, side]);
    }
    return readF32(st, key, shape);
  };
}

/** CLIP's visual projection P_v, `visual_projection.weight` (D, D_v) (no bias), when the checkpoint has it. */
export function visualProjection(st: Safetensors): { weight: Float32Array; shape: [number, number] } | undefined {
  const key = [...st.tensors.keys()].find((k) => k === 'visual_projection.weight' || k.endsWith('.visual_projection.weight'));
  if (!key) return undefined;
  const shape = st.tensors.get(key)!.shape;
  if (shape.length !== 2) throw new WeightsError(`${st.source}: tensor '${key}' has shape [${shape.join(', ')}], expected (D, D_v)`);
  return { weight: readF32(st, key), shape: [shape[0]!, shape[1]!] };
}

export interface ImagePreprocessing {
  /** Resize target: the shorter side (or both sides) in pixels before cropping. */
  size: number;
  /** Centre crop side in pixels (= size when the checkpoint does not crop). */
  crop: number;
  /** Per-channel mean and std of `(x / 255 - mean) / std`. */
  mean: [number, number, number];
  std: [number, number, number];
}

const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];
const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

function triple(v: unknown, what: string): [number, number, number] | undefined {
  if (v === undefined || v === null) return undefined;
  const positive = what.endsWith('std');
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))) return v as [number, number, number];
  throw new WeightsError(`preprocessor config: ${what} ${JSON.stringify(v)}, expected three ${positive ? 'positive ' : ''}numbers`);
}

/** HF's `size`/`crop_size`: a number, or {height, width} (square only), or {shortest_edge}. */
function side(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MODEL_LIMITS.imageSize;
  if (ok(v)) return v;
  const o = (v ?? {}) as Json;
  if (ok(o.shortest_edge)) return o.shortest_edge;
  if (ok(o.height) && o.height === o.width) return o.height;
  throw new WeightsError(`preprocessor config: ${what} ${JSON.stringify(v)}, expected a side in [1, ${MODEL_LIMITS.imageSize}], {shortest_edge} or a square {height, width}`);
}

/**
 * Image size and normalisation from a checkpoint's preprocessor_config.json object (HF:
 * image_mean, image_std, size, crop_size) or a timm config.json's pretrained_cfg (mean, std,
 * input_size); ImageNet's statistics for ViT and CLIP's for CLIP where it says nothing.
 * `imageSize` is the model's input side, the default size.
 */
export function parsePreprocessorConfig(json: unknown, family: ViTFamily, imageSize: number): ImagePreprocessing {
  const j = (json ?? {}) as Json;
  const timm = (j.pretrained_cfg ?? undefined) as Json | undefined;
  const mean = triple(j.image_mean, 'image_mean') ?? triple(timm?.mean, 'pretrained_cfg.mean') ?? (family === 'hf-clip' ? CLIP_MEAN : IMAGENET_MEAN);
  const std = triple(j.image_std, 'image_std') ?? triple(timm?.std, 'pretrained_cfg.std') ?? (family === 'hf-clip' ? CLIP_STD : IMAGENET_STD);
  const input = timm?.input_size as number[] | undefined;
  const crop = side(j.crop_size, 'crop_size') ?? (Array.isArray(input) ? side(input[1], 'pretrained_cfg.input_size') : undefined);
  const size = side(j.size, 'size') ?? crop ?? imageSize;
  return { size, crop: crop ?? size, mean, std };
}
