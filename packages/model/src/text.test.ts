// CLIP's text encoder and DaTP against scripts/text_fixtures.py: a tiny CLIP text model in plain
// torch with HF's parameter names, evaluated in float64 (width 32, 2 layers, 4 heads, context 77,
// the fixture tokenizer's vocabulary), DaTP prompts with C = 3, J = 4.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng, backward, concat, mul, noGrad, scope, sum, tensor, zeroGrad } from '@mpfgvc/kernels';
import { assertClose, testDevice } from '@mpfgvc/kernels/testing';
import {
  CLIP_B16_EMBED_DIM,
  CLIP_TEXT_B16,
  ClipTextEncoder,
  ClipTokenizer,
  Datp,
  type Safetensors,
  WeightsError,
  clipTextWeights,
  parseSafetensors,
  readF32,
  serializeSafetensors,
  textConfigFromHf,
  textConfigFromWeights,
} from './index.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url));
const st = parseSafetensors(fixture('text_clip_tiny.safetensors'), 'text_clip_tiny.safetensors');
const tok = ClipTokenizer.fromJson(JSON.parse(fixture('tokenizer-clip-tiny.json').toString('utf8')));
const spec = textConfigFromWeights(st, { heads: 4 });
const weightNames = [...st.tensors.keys()].filter((k) => k.startsWith('text_'));
const TOKEN = 'text_model.embeddings.token_embedding.weight';

function ints(key: string): Int32Array {
  const e = st.tensors.get(key)!;
  return new Int32Array(new Uint8Array(e.bytes).buffer);
}

/**
 * |got - want| ≤ rel·(max(max|want|, floor) + |want|): relative to the tensor's scale, not to each
 * (possibly tiny) entry. The floor is for tensors that are zero in exact arithmetic (the key
 * bias's gradient: softmax ignores a shift shared by all keys) and hold only f32 rounding here.
 */
function closeRel(got: ArrayLike<number>, want: Float32Array, rel: number, what: string, floor = 0): void {
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), floor);
  assertClose(got, want, { atol: rel * scale, rtol: rel }, what);
}

let dev: Device;
let enc: ClipTextEncoder;
beforeAll(async () => {
  dev = await testDevice();
  enc = new ClipTextEncoder(dev, new Rng(1), spec.text, spec.embedDim);
  enc.load(clipTextWeights(st), st.source);
});
afterAll(() => enc.dispose());

function newDatp(): Datp {
  const d = new Datp(dev, new Rng(2), { numClasses: 3, promptLength: 4, width: 32 }, tok.encode('songbird'), tok.sot, tok.eot);
  d.load((name, shape) => (name === 'prompts' ? readF32(st, 'datp.x', shape) : undefined), 'datp.x');
  return d;
}

/** sum(T ⊙ R) of the fixture's R, backward; returns T. */
async function datpBackward(d: Datp): Promise<Float32Array> {
  const T = d.forward(enc);
  scope(() => backward(sum(mul(T, tensor(dev, readF32(st, 'datp.R'), [3, 24])))));
  const out = (await T.read()) as Float32Array;
  T.dispose();
  return out;
}

describe('ClipTextEncoder', () => {
  it('reads its configuration from the shapes and from an HF config.json', () => {
    expect(spec).toEqual({
      text: { vocabSize: tok.vocabSize, contextLength: 77, width: 32, depth: 2, heads: 4, mlpRatio: 4, activation: 'quick_gelu', layerNormEps: 1e-5 },
      embedDim: 24,
    });
    const hf = { projection_dim: 24, text_config: { vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4 } };
    expect(textConfigFromHf(hf)).toEqual(spec);
    // Left-out fields are CLIP ViT-B/16's.
    expect(textConfigFromHf({ text_config: {} })).toEqual({ text: CLIP_TEXT_B16, embedDim: CLIP_B16_EMBED_DIM });
    // CLIPTextModelWithProjection's config.json has the fields at the top.
    expect(textConfigFromHf({ model_type: 'clip_text_model', ...hf.text_config, projection_dim: 24 })).toEqual(spec);
    expect(() => textConfigFromHf({ text_config: { hidden_act: 'relu' } })).toThrow('config.json: text_config.hidden_act "relu" is not one of "quick_gelu", "gelu"');
  });

  it('has exactly the checkpoint parameter names', () => {
    expect(enc.namedParameters().map(([n]) => n).sort()).toEqual(weightNames.sort());
  });

  it('matches the reference on tokenised text (pooled at EOT, run up to the last EOT)', async () => {
    const batch = tok.encodeBatch(['a photo of a red-winged blackbird.', 'A Photo of Baklava!']);
    expect(Array.from(batch.ids)).toEqual(Array.from(ints('batch.ids')));
    const T = noGrad(() => enc.forward(batch));
    closeRel(await T.read(), readF32(st, 'batch.text_embeds'), 1e-4, 'text_embeds');
    T.dispose();
  });

  it('loads prefixed checkpoints; fails naming a wrong shape, the missing keys, an ambiguous prefix', () => {
    const entries: Parameters<typeof serializeSafetensors>[0] = {};
    for (const k of weightNames) entries[k] = { dtype: 'F32', shape: st.tensors.get(k)!.shape, data: readF32(st, k) };
    const fc1 = 'text_model.encoder.layers.1.mlp.fc1.weight';
    const bad = (edit: (e: typeof entries) => void, source: string): Safetensors => {
      const copy = { ...entries };
      edit(copy);
      return parseSafetensors(serializeSafetensors(copy), source);
    };
    const wrong = bad((e) => (e[fc1] = { dtype: 'F32', shape: [64, 32], data: new Float32Array(64 * 32) }), 'wrong.safetensors');
    expect(() => enc.load(clipTextWeights(wrong), wrong.source)).toThrow(new WeightsError(`wrong.safetensors: tensor '${fc1}' has shape [64, 32], expected [128, 32]`));
    const missing = bad((e) => delete e['text_projection.weight'], 'missing.safetensors');
    expect(() => enc.load(clipTextWeights(missing), missing.source)).toThrow("missing.safetensors: missing 1 parameter(s): 'text_projection.weight'");
    const prefixed: typeof entries = {};
    for (const k of weightNames) prefixed[`clip.${k}`] = entries[k]!;
    const wrapped = parseSafetensors(serializeSafetensors(prefixed), 'wrapped.safetensors');
    enc.load(clipTextWeights(wrapped), wrapped.source);
    expect(textConfigFromWeights(wrapped, { heads: 4 })).toEqual(spec);
    const twice = parseSafetensors(serializeSafetensors({ ...prefixed, ...entries }), 'twice.safetensors');
    expect(() => enc.load(clipTextWeights(twice), twice.source)).not.toThrow();
    const two = parseSafetensors(serializeSafetensors({ ...prefixed, [`a.${TOKEN}`]: entries[TOKEN]! }), 'two.safetensors');
    expect(() => clipTextWeights(two)).toThrow(`two.safetensors: several text towers ('a.', 'clip.' before '${TOKEN}')`);
    const notClip = parseSafetensors(serializeSafetensors({ 'cls_token': entries['text_projection.weight']! }), 'vit.safetensors');
    expect(() => clipTextWeights(notClip)).toThrow(/vit.safetensors: not a Hugging Face CLIP text checkpoint .* keys begin 'cls_token'/);
  });
});

describe('DaTP', () => {
  it('gives T and its gradient in X with the text encoder frozen', async () => {
    const d = newDatp();
    expect(d.length).toBe(4 + tok.encode('songbird').length + 2);
    expect(tok.encode('songbird')).toEqual(Array.from(ints('datp.class_ids')));
    enc.setTrainable(false);
    const T = await datpBackward(d);
    closeRel(T, readF32(st, 'datp.T'), 1e-4, 'T');
    closeRel(await d.prompts.grad!.read(), readF32(st, 'datp.grad_x'), 1e-3, 'dX');
    expect(enc.parameters().every((p) => p.grad === null)).toBe(true);
    d.dispose();
  });

  it('passes gradients to every text weight when the encoder is trainable', async () => {
    const d = newDatp();
    enc.setTrainable(true);
    await datpBackward(d);
    for (const [name, p] of enc.namedParameters()) closeRel(await p.grad!.read(), readF32(st, `grad.${name}`), 1e-3, `d ${name}`, 1e-3);
    zeroGrad(enc.parameters());
    enc.setTrainable(false);
    d.dispose();
  });

  it('running only up to EOT equals the full zero-padded context (causal mask)', async () => {
    const d = newDatp();
    const [short, full] = noGrad(() =>
      scope(() => {
        const x = d.embeddings(enc); // (C, L, D_t)
        const pad = enc.tokenEmbeddings(tensor(dev, new Int32Array(3 * (77 - d.length)), [3, 77 - d.length]));
        const padded = concat([x, pad], 1); // (C, 77, D_t)
        return [d.forward(enc), enc.encodeEmbeddings(padded, d.length - 1)] as const;
      }),
    );
    const a = (await short.read()) as Float32Array;
    assertClose(await full.read(), a, { atol: 1e-6, rtol: 1e-6 }, 'T (77 tokens) vs T (up to EOT)');
    closeRel(a, readF32(st, 'datp.T'), 1e-4, 'T');
    short.dispose();
    full.dispose();
    d.dispose();
  });
});
