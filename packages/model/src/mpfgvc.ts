// MP-FGVC assembled (docs/method.md §1): the image encoder with SsVP and its visual projection, the
// frozen CLIP text encoder with DaTP prompts, the stage-1 heads (vision classifier, cosine
// image-text logits) and VLFM for stage 2. Which parameters train depends on the stage, and on
// the two ablation options of the configuration: hand-crafted fixed prompts instead of DaTP
// (`prompts: 'fixed'`) and the ViT-only baseline (`objective: 'vision'`).
import {
  type Device,
  Rng,
  type Tensor,
  add,
  crossEntropy,
  l2Normalize,
  linear,
  matmul,
  noGrad,
  scale,
  scope,
  softmax,
} from '@mpfgvc/kernels';
import { z } from 'zod';
import { ConfigError, MODEL_LIMITS, type MPFGVCConfig, modelConfigSchema, numPatches, parseModelConfig, withModelDefaults } from './config.js';
import { Datp } from './datp.js';
import { Module, withParameterBudget } from './module.js';
import { parseWith } from './schema.js';
import { ClipTextEncoder } from './text.js';
import type { TokenBatch } from './tokenizer.js';
import { VisionTransformer } from './vit.js';
import { VLFM } from './vlfm.js';
import { type Safetensors, WeightsError, parseSafetensors, readF32, serializeSafetensors } from './weights/safetensors.js';

export type Stage = 1 | 2;

/** Token ids the prompts need (saved with the model). */
export interface PromptTokens {
  /** The super-category's tokens, without SOT and EOT (DaTP's class++). */
  classIds: number[];
  sot: number;
  eot: number;
  /**
   * Fixed prompts only: each class's hand-crafted prompt, in label order, as token ids without SOT
   * and EOT (ClipTokenizer.encode('a photo of a Cardinal, a type of bird.')); lengths may differ.
   */
  classPrompts?: number[][];
}

const tokenId = z.int().min(0).max(MODEL_LIMITS.vocabSize);

export const promptTokensSchema = z.strictObject({
  classIds: z.array(tokenId).max(MODEL_LIMITS.contextLength),
  sot: tokenId,
  eot: tokenId,
  classPrompts: z.array(z.array(tokenId).max(MODEL_LIMITS.contextLength)).max(MODEL_LIMITS.numClasses).optional(),
});

/**
 * Throws `makeError(message)` unless every token id lies in the text vocabulary and DaTP's prompt
 * fits the context: an id beyond the embedding table would read memory that is not the table's.
 */
function checkTokens(tokens: PromptTokens, config: MPFGVCConfig, makeError: (m: string) => Error): void {
  const { vocabSize, contextLength } = config.text;
  const bad = (ids: readonly number[]) => ids.find((id) => id >= vocabSize);
  for (const [what, ids] of [['classIds', tokens.classIds], ['sot', [tokens.sot]], ['eot', [tokens.eot]]] as const) {
    const id = bad(ids);
    if (id !== undefined) throw makeError(`tokens.${what} holds id ${id}, outside the text vocabulary [0, ${vocabSize})`);
  }
  if (config.prompts !== 'fixed' && config.promptLength + tokens.classIds.length + 2 > contextLength) {
    throw makeError(`DaTP's prompt of ${config.promptLength} + ${tokens.classIds.length} + 2 tokens exceeds the text context length ${contextLength}`);
  }
}

/**
 * The tensors that fix every size of a configuration (widths, vocabulary, context, classes,
 * patches) must be in the file with exactly the shapes the configuration implies; checked before
 * anything is built from the configuration.
 */
function checkPinnedShapes(st: Safetensors, c: MPFGVCConfig): void {
  const v = c.vision;
  const t = c.text;
  const pinned: [string, number[]][] = [
    ['vision.patch_embed.proj.weight', [v.width, v.channels, v.patchSize, v.patchSize]],
    ['vision.pos_embed', [1, numPatches(v) + 1, v.width]],
    ['text.text_model.embeddings.token_embedding.weight', [t.vocabSize, t.width]],
    ['text.text_model.embeddings.position_embedding.weight', [t.contextLength, t.width]],
    ['visual_projection.weight', [c.embedDim, v.width]],
    ['vision_head.bias', [c.numClasses]],
  ];
  if (c.prompts !== 'fixed') pinned.push(['datp.prompts', [c.numClasses, c.promptLength, t.width]]);
  for (const [key, want] of pinned) {
    const e = st.tensors.get(key);
    if (!e) throw new WeightsError(`${st.source}: missing tensor '${key}'`);
    if (e.shape.length !== want.length || e.shape.some((d, i) => d !== want[i])) {
      throw new WeightsError(`${st.source}: tensor '${key}' has shape [${e.shape.join(', ')}], but the configuration in the metadata needs [${want.join(', ')}]`);
    }
  }
}

function metadataJson(st: Safetensors, key: string): unknown {
  const text = st.metadata[key];
  if (text === undefined) throw new WeightsError(`${st.source}: no '${key}' in the metadata`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new WeightsError(`${st.source}: metadata '${key}' is not JSON (${(e as Error).message})`);
  }
}

/**
 * A parsed model file's metadata, checked before anything is built from it: the configuration and
 * prompt tokens against their schemas, the ids against the vocabulary, and every size against the
 * tensors the file holds. Needs no device; MPFGVC.load runs it first.
 */
export function checkModelFile(st: Safetensors): { config: MPFGVCConfig; tokens: PromptTokens } {
  const source = st.source;
  if (st.metadata.format !== FORMAT) throw new WeightsError(`${source}: not an MP-FGVC checkpoint (format ${JSON.stringify(st.metadata.format ?? null)}, expected '${FORMAT}')`);
  const config = withModelDefaults(parseWith(modelConfigSchema, metadataJson(st, 'config'), `${source}: metadata config`, (m) => new WeightsError(m)));
  const tokens = parseWith(promptTokensSchema, metadataJson(st, 'tokens'), `${source}: metadata tokens`, (m) => new WeightsError(m));
  checkTokens(tokens, config, (m) => new WeightsError(`${source}: ${m}`));
  checkPinnedShapes(st, config);
  return { config, tokens };
}

const rgb = z.tuple([z.number(), z.number(), z.number()]);
const positive = z.number().positive();

/** What a model file carries for its use besides the architecture: class names, the input normalisation, where it was trained. */
export const modelInfoSchema = z.strictObject({
  classes: z.array(z.string().max(1000)).max(MODEL_LIMITS.numClasses).optional(),
  normalization: z.strictObject({ mean: rgb, std: z.tuple([positive, positive, positive]) }).optional(),
  /** Evaluation crop: the shorter side resized to size / cropRatio, then a centred crop. */
  cropRatio: z.number().positive().max(1).optional(),
  promptTemplate: z.string().max(1000).optional(),
  dataset: z.string().max(1000).optional(),
});

export type ModelInfo = z.infer<typeof modelInfoSchema>;

export interface LoadOptions {
  /** Load tensors holding NaN or infinity instead of refusing them (for inspecting a diverged run). */
  allowNonFinite?: boolean;
}

export const HEADS = ['vision', 'text', 'vlfm', 'ensemble'] as const;
export type Head = (typeof HEADS)[number];

export interface StageOneOutput {
  /** L_1 = L_v + L_i2t. */
  loss: Tensor;
  lossVision: Tensor;
  lossText: Tensor;
  /** ŷ_1 (B, C). */
  visionLogits: Tensor;
  /** cos(V, T^c)/τ (B, C). */
  textLogits: Tensor;
  /** SsVP's selected patch ids (B, K), when SsVP is on. */
  selected?: Tensor;
}

export interface VisionOutput {
  /** L_v. */
  loss: Tensor;
  /** ŷ_1 (B, C). */
  visionLogits: Tensor;
  selected?: Tensor;
}

/**
 * A stage's training objective by name: `total` is what backward runs on; `vision` (L_v), `text`
 * (L_i2t) and `vlfm` (L_2) are the losses it is made of. An objective of one loss names that loss
 * too: it is then the same tensor as `total`.
 */
export interface StageLosses {
  total: Tensor;
  vision?: Tensor;
  text?: Tensor;
  vlfm?: Tensor;
}

/** What stage 2 classifies: images, or their V = P_v E_V (B, D) computed before (the image side is frozen in stage 2). */
export type StageTwoInput = { images: Tensor } | { joint: Tensor };

/** Logits of the model's heads (MPFGVC.heads): all four, or the vision head alone (objective 'vision'). */
export interface Predictions {
  vision: Tensor;
  text?: Tensor;
  vlfm?: Tensor;
  /** Mean of the three heads' softmax probabilities (B, C). */
  ensemble?: Tensor;
  selected?: Tensor;
}

/**
 * The fixed prompts as a batch in CLIP's layout ([SOT, tokens, EOT], zero-padded), checked against
 * the class count and the text encoder's vocabulary and context.
 */
function fixedPromptBatch(tokens: PromptTokens, config: MPFGVCConfig): TokenBatch {
  const prompts = tokens.classPrompts;
  const C = config.numClasses;
  const { vocabSize, contextLength } = config.text;
  if (!Array.isArray(prompts) || prompts.length !== C) {
    throw new Error(`fixed prompts: PromptTokens.classPrompts must hold one prompt per class (${C}), got ${Array.isArray(prompts) ? prompts.length : JSON.stringify(prompts ?? null)}`);
  }
  const rows = prompts.map((p, c) => {
    const row = [tokens.sot, ...p, tokens.eot];
    if (row.length > contextLength) throw new Error(`fixed prompts: class ${c}'s prompt has ${row.length} tokens with SOT and EOT, beyond the text context length ${contextLength}`);
    const bad = row.find((id) => !(Number.isInteger(id) && id >= 0 && id < vocabSize));
    if (bad !== undefined) throw new Error(`fixed prompts: class ${c}'s prompt holds token id ${bad}, outside the text vocabulary [0, ${vocabSize})`);
    return row;
  });
  const length = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(C * length);
  const eot = new Int32Array(C);
  rows.forEach((r, c) => {
    ids.set(r, c * length);
    eot[c] = r.length - 1;
  });
  return { ids, batch: C, length, eot };
}

const FORMAT = 'mpfgvc-1';

export class MPFGVC extends Module {
  /** With the optional fields filled (withModelDefaults). */
  readonly config: MPFGVCConfig;
  readonly vision: VisionTransformer;
  readonly text: ClipTextEncoder;
  /** Absent with fixed prompts. */
  readonly datp: Datp | undefined;
  /** The fixed prompts (prompts 'fixed'), one row per class. */
  private readonly fixedPrompts: TokenBatch | undefined;
  /** The heads predict() returns. */
  readonly heads: readonly Head[];
  /** P_v (D, D_v), bias-free as CLIP's visual projection. */
  readonly visualProjection: Tensor;
  readonly headWeight: Tensor;
  readonly headBias: Tensor;
  readonly vlfm: VLFM;

  constructor(
    device: Device,
    rng: Rng,
    config: MPFGVCConfig,
    readonly tokens: PromptTokens,
  ) {
    super(device, rng);
    this.config = config = withModelDefaults(parseModelConfig(config));
    checkTokens(parseWith(promptTokensSchema, tokens, 'prompt tokens', (m) => new ConfigError(m)), config, (m) => new ConfigError(m));
    const { vision, text, embedDim: D, numClasses: C } = config;
    this.vision = this.child('vision', new VisionTransformer(device, rng, vision));
    this.text = this.child('text', new ClipTextEncoder(device, rng, text, D));
    if (config.prompts === 'fixed') {
      this.fixedPrompts = fixedPromptBatch(tokens, config);
      this.datp = undefined;
    } else {
      this.datp = this.child('datp', new Datp(device, rng, { numClasses: C, promptLength: config.promptLength, width: text.width }, tokens.classIds, tokens.sot, tokens.eot));
      this.fixedPrompts = undefined;
    }
    this.heads = config.objective === 'vision' ? ['vision'] : HEADS;
    this.visualProjection = this.param('visual_projection.weight', [D, vision.width], { normal: 1 / Math.sqrt(vision.width) });
    const headIn = config.visionHeadOn === 'projection' ? D : vision.width;
    this.headWeight = this.param('vision_head.weight', [C, headIn], { normal: 0.01 });
    this.headBias = this.param('vision_head.bias', [C], 'zeros');
    this.vlfm = this.child('vlfm', new VLFM(device, rng, D, C));
  }

  /** The ViT-only baseline (objective 'vision'): L_v alone, no stage 2, the vision head alone. */
  get visionOnly(): boolean {
    return this.config.objective === 'vision';
  }

  /** The parameters a stage trains (docs/method.md §8); fixed prompts train nothing, ViT only trains no projection L_v does not reach. */
  trainable(stage: Stage): Tensor[] {
    if (stage === 2) {
      if (this.visionOnly) throw new Error("the ViT-only model (objective 'vision') has no stage 2");
      return this.vlfm.parameters();
    }
    const head = [this.headWeight, this.headBias];
    if (this.visionOnly) return [...this.vision.parameters(), ...(this.config.visionHeadOn === 'projection' ? [this.visualProjection] : []), ...head];
    return [...this.vision.parameters(), this.visualProjection, ...head, ...(this.datp?.parameters() ?? [])];
  }

  /** Sets requiresGrad so that exactly the stage's parameters train. */
  setStage(stage: Stage): void {
    this.setTrainable(false);
    for (const t of this.trainable(stage)) t.requiresGrad = true;
  }

  private ssvpK(): number | null {
    return this.config.selectK > 0 ? this.config.selectK : null;
  }

  /**
   * T (C, D): every subcategory's text embedding, of its DaTP prompt, or of its fixed prompt
   * (a constant: computed without a tape, so callers compute it once and keep it).
   */
  textFeatures(): Tensor {
    if (this.fixedPrompts) {
      const batch = this.fixedPrompts;
      return noGrad(() => this.text.forward(batch));
    }
    return this.datp!.forward(this.text);
  }

  /** E_V (B, D_v), V = P_v E_V (B, D) and the selected ids. */
  encodeImages(images: Tensor): { embedding: Tensor; joint: Tensor; selected?: Tensor } {
    return scope(() => {
      const { embedding, selected } = this.vision.forward(images, { ssvpK: this.ssvpK() });
      const joint = linear(embedding, this.visualProjection);
      return selected ? { embedding, joint, selected } : { embedding, joint };
    });
  }

  /** V and ŷ_1. */
  private visionHead(images: Tensor) {
    const { embedding, joint, selected } = this.encodeImages(images);
    const visionLogits = linear(this.config.visionHeadOn === 'projection' ? joint : embedding, this.headWeight, this.headBias);
    return { joint, visionLogits, selected };
  }

  private logits(images: Tensor, text: Tensor) {
    const { joint, visionLogits, selected } = this.visionHead(images);
    // cos(V, T^c)/τ: the 1/τ rides in the matmul's alpha.
    const textLogits = matmul(l2Normalize(joint), l2Normalize(text), { transB: true, alpha: 1 / this.config.temperature }); // (B, C)
    return { joint, visionLogits, textLogits, selected };
  }

  /**
   * Stage 1: L_1 = CE(ŷ_1, y) + CE(cos(V, T)/τ, y), text encoder frozen, DaTP prompts trained.
   * With fixed prompts `text` may carry T from textFeatures() (it is a constant); with DaTP it
   * must not (T has to be recomputed on the tape for the prompts to train).
   */
  stageOne(images: Tensor, labels: Tensor | Int32Array, opts: { labelSmoothing?: number; text?: Tensor } = {}): StageOneOutput {
    if (this.visionOnly) throw new Error("stageOne: the ViT-only model (objective 'vision') trains with stageOneVision (L_v alone)");
    if (opts.text && this.datp) throw new Error('stageOne: DaTP prompts train in stage 1, so T cannot be given (only with fixed prompts)');
    return scope(() => {
      const { visionLogits, textLogits, selected } = this.logits(images, opts.text ?? this.textFeatures());
      const lossVision = crossEntropy(visionLogits, labels, opts);
      const lossText = crossEntropy(textLogits, labels, opts);
      const loss = add(lossVision, lossText);
      const out: StageOneOutput = { loss, lossVision, lossText, visionLogits, textLogits };
      if (selected) out.selected = selected;
      return out;
    });
  }

  /** The ViT-only baseline's stage 1: L_v = CE(ŷ_1, y); the text side does not run. */
  stageOneVision(images: Tensor, labels: Tensor | Int32Array, opts: { labelSmoothing?: number } = {}): VisionOutput {
    return scope(() => {
      const { visionLogits, selected } = this.visionHead(images);
      const out: VisionOutput = { loss: crossEntropy(visionLogits, labels, opts), visionLogits };
      if (selected) out.selected = selected;
      return out;
    });
  }

  /**
   * Stage 2: L_2 = CE(ŷ_2, y) with both encoders and DaTP frozen. `text` is T from textFeatures(),
   * computed once per run (it cannot change in stage 2). The image side runs without a tape.
   */
  stageTwo(images: Tensor, labels: Tensor | Int32Array, text: Tensor, opts: { labelSmoothing?: number } = {}): { loss: Tensor; logits: Tensor } {
    return this.stageTwoOn({ images }, labels, text, opts);
  }

  /**
   * Stage 1's objective for this model's configuration: L_1 = L_v + L_i2t (stageOne), or L_v alone
   * for the ViT-only baseline (stageOneVision, which takes no T).
   */
  stageOneLoss(images: Tensor, labels: Tensor | Int32Array, opts: { labelSmoothing?: number; text?: Tensor } = {}): StageLosses {
    if (this.visionOnly) {
      const { loss } = this.stageOneVision(images, labels, opts);
      return { total: loss, vision: loss };
    }
    const { loss, lossVision, lossText } = this.stageOne(images, labels, opts);
    return { total: loss, vision: lossVision, text: lossText };
  }

  /** Stage 2's objective L_2, from images or from their V computed before: both run the same VLFM and loss. */
  stageTwoLoss(input: StageTwoInput, labels: Tensor | Int32Array, text: Tensor, opts: { labelSmoothing?: number } = {}): StageLosses {
    const { loss } = this.stageTwoOn(input, labels, text, opts);
    return { total: loss, vlfm: loss };
  }

  private stageTwoOn(input: StageTwoInput, labels: Tensor | Int32Array, text: Tensor, opts: { labelSmoothing?: number }): { loss: Tensor; logits: Tensor } {
    if (this.visionOnly) throw new Error("stageTwo: the ViT-only model (objective 'vision') has no stage 2");
    return scope(() => {
      const joint = 'joint' in input ? input.joint : noGrad(() => this.encodeImages(input.images).joint);
      const logits = this.vlfm.forward(joint, text);
      return { loss: crossEntropy(logits, labels, opts), logits };
    });
  }

  /**
   * Every head's logits/probabilities for evaluation (no tape). `text` from textFeatures(); the
   * ViT-only model needs none.
   */
  predict(images: Tensor, text?: Tensor): Predictions {
    if (this.visionOnly) {
      return noGrad(() =>
        scope(() => {
          const { visionLogits: vision, selected } = this.visionHead(images);
          return selected ? { vision, selected } : { vision };
        }),
      );
    }
    if (!text) throw new Error('predict: give T (textFeatures()) for the text and VLFM heads');
    return noGrad(() =>
      scope(() => {
        const { joint, visionLogits, textLogits, selected } = this.logits(images, text);
        const vlfmLogits = this.vlfm.forward(joint, text);
        const probs = add(add(softmax(visionLogits), softmax(textLogits)), softmax(vlfmLogits));
        const out: Predictions = { vision: visionLogits, text: textLogits, vlfm: vlfmLogits, ensemble: scale(probs, 1 / 3) };
        if (selected) out.selected = selected;
        return out;
      }),
    );
  }

  /** What the model file says about its use beyond the weights: class names, preprocessing (saved with it, read back by load). */
  info: ModelInfo = {};

  /**
   * The whole model as safetensors bytes; the config, the prompt tokens and `info` (class names,
   * normalisation) ride in the metadata, so that the file alone is enough to use the model.
   */
  async save(): Promise<Uint8Array> {
    const entries: Parameters<typeof serializeSafetensors>[0] = {};
    for (const [name, v] of await this.stateDict()) entries[name] = { dtype: 'F32', shape: v.shape, data: v.data };
    const meta: Record<string, string> = { format: FORMAT, config: JSON.stringify(this.config), tokens: JSON.stringify(this.tokens) };
    if (Object.keys(this.info).length > 0) meta.info = JSON.stringify(parseWith(modelInfoSchema, this.info, 'model info', (m) => new ConfigError(m)));
    return serializeSafetensors(entries, meta);
  }

  /**
   * Rebuilds a model saved by save(); fails naming the key or shape at fault. The metadata is
   * checked against the schema and against the tensors the file holds before anything is built,
   * and tensors holding NaN or infinity are refused (unless opts.allowNonFinite).
   */
  static load(device: Device, bytes: Uint8Array, source = 'mpfgvc.safetensors', opts: LoadOptions = {}): MPFGVC {
    const st = parseSafetensors(bytes, source);
    const { config, tokens } = checkModelFile(st);
    let elements = 0;
    for (const e of st.tensors.values()) elements += e.shape.reduce((a, b) => a * b, 1);
    // Twice what the file holds: a wrong shape still gets its precise message from load(), while a
    // configuration that asks for far more than the file stops before it is allocated.
    const info = st.metadata.info === undefined ? {} : parseWith(modelInfoSchema, metadataJson(st, 'info'), `${source}: metadata info`, (m) => new WeightsError(m));
    if (info.classes && info.classes.length !== config.numClasses) throw new WeightsError(`${source}: metadata info.classes names ${info.classes.length} classes, the model has ${config.numClasses}`);
    const model = withParameterBudget({ tensors: 2 * st.tensors.size + 64, elements: 2 * elements + (1 << 20), source }, () => new MPFGVC(device, new Rng(0), config, tokens));
    model.info = info;
    try {
      model.load((name, shape) => {
        if (!st.tensors.has(name)) return undefined;
        const values = readF32(st, name, shape);
        if (!opts.allowNonFinite) {
          const i = values.findIndex((x) => !Number.isFinite(x));
          if (i >= 0) throw new WeightsError(`${source}: tensor '${name}' holds ${values[i]} at index ${i}; the model diverged or the file is damaged`);
        }
        return values;
      }, source);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  }
}
