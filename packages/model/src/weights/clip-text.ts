// Hugging Face CLIP checkpoints' text tower (CLIPModel or CLIPTextModelWithProjection safetensors):
// our parameter names are HF's, so the weight source only strips a prefix and checks shapes. The
// configuration comes from config.json where there is one, else from the tensor shapes.
import { type Activation, CLIP_B16_EMBED_DIM, CLIP_TEXT_B16, type TextConfig, validateText } from '../config.js';
import type { WeightSource } from '../module.js';
import { type Safetensors, WeightsError, readF32 } from './safetensors.js';

const TOKEN_KEY = 'text_model.embeddings.token_embedding.weight';

/**
 * What precedes `text_model.` in the checkpoint's keys: nothing when the bare key is there, else
 * the one prefix that has it (`clip.`); several candidates are ambiguous, not a guess.
 */
function textPrefix(st: Safetensors): string {
  if (st.tensors.has(TOKEN_KEY)) return '';
  const prefixes = [...st.tensors.keys()].filter((k) => k.endsWith(`.${TOKEN_KEY}`)).map((k) => k.slice(0, k.length - TOKEN_KEY.length));
  if (prefixes.length === 1) return prefixes[0]!;
  if (prefixes.length > 1) throw new WeightsError(`${st.source}: several text towers (${prefixes.map((p) => `'${p}'`).join(', ')} before '${TOKEN_KEY}')`);
  const some = [...st.tensors.keys()].slice(0, 5).map((k) => `'${k}'`);
  throw new WeightsError(`${st.source}: not a Hugging Face CLIP text checkpoint (no '${TOKEN_KEY}' key); keys begin ${some.join(', ')}`);
}

/**
 * A WeightSource for ClipTextEncoder over an HF CLIP checkpoint. A tensor whose shape differs
 * from the model's throws, naming the key and both shapes; a missing one is left for
 * Module.load to list.
 */
export function clipTextWeights(st: Safetensors): WeightSource {
  const prefix = textPrefix(st);
  return (name, shape) => {
    const key = prefix + name;
    return st.tensors.has(key) ? readF32(st, key, shape) : undefined;
  };
}

export interface ClipTextSpec {
  text: TextConfig;
  /** D, HF's projection_dim. */
  embedDim: number;
}

type Json = Record<string, unknown>;

function field(cfg: Json, key: string, fallback: number, source: string): number {
  const v = cfg[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new WeightsError(`${source}: text_config.${key} is ${JSON.stringify(v)}, expected a number`);
  return v;
}

/**
 * The text tower's configuration from an HF config.json: CLIPModel's (`text_config` and a top-level
 * `projection_dim`) or CLIPTextModelWithProjection's (the fields at the top). Fields the file
 * leaves out take HF's CLIPTextConfig defaults, which are CLIP ViT-B's.
 */
export function textConfigFromHf(json: unknown, source = 'config.json'): ClipTextSpec {
  if (!json || typeof json !== 'object') throw new WeightsError(`${source}: not a JSON object`);
  const root = json as Json;
  const cfg = (root.text_config ?? root.text_config_dict ?? root) as Json;
  const d = CLIP_TEXT_B16;
  const width = field(cfg, 'hidden_size', d.width, source);
  const intermediate = field(cfg, 'intermediate_size', d.width * d.mlpRatio, source);
  const act = cfg.hidden_act ?? d.activation;
  if (act !== 'quick_gelu' && act !== 'gelu') throw new WeightsError(`${source}: text_config.hidden_act ${JSON.stringify(act)} is not one of "quick_gelu", "gelu"`);
  if (intermediate % width !== 0) throw new WeightsError(`${source}: text_config.intermediate_size ${intermediate} is not a multiple of hidden_size ${width}`);
  return {
    text: {
      vocabSize: field(cfg, 'vocab_size', d.vocabSize, source),
      contextLength: field(cfg, 'max_position_embeddings', d.contextLength, source),
      width,
      depth: field(cfg, 'num_hidden_layers', d.depth, source),
      heads: field(cfg, 'num_attention_heads', d.heads, source),
      mlpRatio: intermediate / width,
      activation: act as Activation,
      layerNormEps: field(cfg, 'layer_norm_eps', d.layerNormEps, source),
    },
    embedDim: field(root, 'projection_dim', field(cfg, 'projection_dim', CLIP_B16_EMBED_DIM, source), source),
  };
}

/**
 * The configuration read off the tensor shapes, for checkpoints without a config.json. Shapes do
 * not fix the number of heads: unless given it is width / 64, OpenAI's rule for every CLIP it
 * released.
 */
export function textConfigFromWeights(st: Safetensors, opts: { heads?: number } = {}): ClipTextSpec {
  const prefix = textPrefix(st);
  const shape = (name: string, rank: number): number[] => {
    const e = st.tensors.get(prefix + name);
    if (!e) throw new WeightsError(`${st.source}: missing tensor '${prefix + name}'`);
    if (e.shape.length !== rank) throw new WeightsError(`${st.source}: tensor '${prefix + name}' has shape [${e.shape.join(', ')}], expected rank ${rank}`);
    return e.shape;
  };
  const [vocabSize, width] = shape(TOKEN_KEY, 2) as [number, number];
  const layerIds = new Set<number>();
  const layerKey = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}text_model\\.encoder\\.layers\\.(\\d+)\\.`);
  for (const key of st.tensors.keys()) {
    const m = layerKey.exec(key);
    if (m) layerIds.add(Number(m[1]));
  }
  const depth = layerIds.size;
  if (depth === 0) throw new WeightsError(`${st.source}: no 'text_model.encoder.layers.N.' tensors`);
  const gap = [...layerIds].find((i) => i >= depth);
  if (gap !== undefined) throw new WeightsError(`${st.source}: ${depth} text layers, but one is numbered ${gap} (layers must be numbered 0..${depth - 1})`);
  const hidden = shape('text_model.encoder.layers.0.mlp.fc1.weight', 2)[0]!;
  const heads = opts.heads ?? width / 64;
  if (!Number.isInteger(heads) || width % heads !== 0 || hidden % width !== 0) {
    throw new WeightsError(`${st.source}: text width ${width}, ${heads} heads and MLP width ${hidden} fit no CLIP text configuration`);
  }
  return {
    text: {
      vocabSize,
      contextLength: shape('text_model.embeddings.position_embedding.weight', 2)[0]!,
      width,
      depth,
      heads,
      mlpRatio: hidden / width,
      activation: 'quick_gelu',
      layerNormEps: 1e-5,
    },
    embedDim: shape('text_projection.weight', 2)[0]!,
  };
}

/**
 * The text tower's configuration for a checkpoint folder: every size from the tensors (what the
 * weights hold decides), the head count, activation and LayerNorm eps from config.json when there
 * is one. A config.json that declares sizes the weights do not have is refused, naming the field.
 */
export function textConfigFromCheckpoint(st: Safetensors, json?: unknown, source = 'config.json'): ClipTextSpec {
  const hf = json === undefined ? undefined : textConfigFromHf(json, source);
  const spec = textConfigFromWeights(st, hf ? { heads: hf.text.heads } : {});
  if (hf) {
    const fields: [string, number, number][] = [
      ['vocab_size', hf.text.vocabSize, spec.text.vocabSize],
      ['max_position_embeddings', hf.text.contextLength, spec.text.contextLength],
      ['hidden_size', hf.text.width, spec.text.width],
      ['num_hidden_layers', hf.text.depth, spec.text.depth],
      ['intermediate_size', hf.text.width * hf.text.mlpRatio, spec.text.width * spec.text.mlpRatio],
      ['projection_dim', hf.embedDim, spec.embedDim],
    ];
    for (const [key, declared, actual] of fields) {
      if (declared !== actual) throw new WeightsError(`${source}: ${key} is ${declared}, but the weights of ${st.source} have ${actual}`);
    }
    spec.text = { ...spec.text, activation: hf.text.activation, layerNormEps: hf.text.layerNormEps };
  }
  try {
    validateText(spec.text);
  } catch (e) {
    throw new WeightsError(`${st.source}: ${(e as Error).message}`);
  }
  return spec;
}
