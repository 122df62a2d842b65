// MP-FGVC assembled (DESIGN.md §1): the image encoder with SsVP and its visual projection, the
// frozen CLIP text encoder with DaTP prompts, the stage-1 heads (vision classifier, cosine
// image-text logits) and VLFM for stage 2. Which parameters train depends on the stage.
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
import type { MPFGVCConfig } from './config.js';
import { Datp } from './datp.js';
import { Module } from './module.js';
import { ClipTextEncoder } from './text.js';
import { VisionTransformer } from './vit.js';
import { VLFM } from './vlfm.js';
import { WeightsError, parseSafetensors, readF32, serializeSafetensors } from './weights/safetensors.js';

export type Stage = 1 | 2;

/** Token ids DaTP needs: the super-category's tokens and CLIP's SOT/EOT (saved with the model). */
export interface PromptTokens {
  classIds: number[];
  sot: number;
  eot: number;
}

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

export interface Predictions {
  vision: Tensor;
  text: Tensor;
  vlfm: Tensor;
  /** Mean of the three heads' softmax probabilities (B, C). */
  ensemble: Tensor;
  selected?: Tensor;
}

const FORMAT = 'mpfgvc-1';

export class MPFGVC extends Module {
  readonly vision: VisionTransformer;
  readonly text: ClipTextEncoder;
  readonly datp: Datp;
  /** P_v (D, D_v), bias-free as CLIP's visual projection. */
  readonly visualProjection: Tensor;
  readonly headWeight: Tensor;
  readonly headBias: Tensor;
  readonly vlfm: VLFM;

  constructor(
    device: Device,
    rng: Rng,
    readonly config: MPFGVCConfig,
    readonly tokens: PromptTokens,
  ) {
    super(device, rng);
    const { vision, text, embedDim: D, numClasses: C } = config;
    this.vision = this.child('vision', new VisionTransformer(device, rng, vision));
    this.text = this.child('text', new ClipTextEncoder(device, rng, text, D));
    this.datp = this.child('datp', new Datp(device, rng, { numClasses: C, promptLength: config.promptLength, width: text.width }, tokens.classIds, tokens.sot, tokens.eot));
    this.visualProjection = this.param('visual_projection.weight', [D, vision.width], { normal: 1 / Math.sqrt(vision.width) });
    const headIn = config.visionHeadOn === 'projection' ? D : vision.width;
    this.headWeight = this.param('vision_head.weight', [C, headIn], { normal: 0.01 });
    this.headBias = this.param('vision_head.bias', [C], 'zeros');
    this.vlfm = this.child('vlfm', new VLFM(device, rng, D, C));
  }

  /** The parameters a stage trains (DESIGN.md §1). */
  trainable(stage: Stage): Tensor[] {
    if (stage === 2) return this.vlfm.parameters();
    return [...this.vision.parameters(), this.visualProjection, this.headWeight, this.headBias, ...this.datp.parameters()];
  }

  /** Sets requiresGrad so that exactly the stage's parameters train. */
  setStage(stage: Stage): void {
    this.setTrainable(false);
    for (const t of this.trainable(stage)) t.requiresGrad = true;
  }

  private ssvpK(): number | null {
    return this.config.selectK > 0 ? this.config.selectK : null;
  }

  /** T (C, D): the DaTP text embeddings of every subcategory. */
  textFeatures(): Tensor {
    return this.datp.forward(this.text);
  }

  /** E_V (B, D_v), V = P_v E_V (B, D) and the selected ids. */
  encodeImages(images: Tensor): { embedding: Tensor; joint: Tensor; selected?: Tensor } {
    return scope(() => {
      const { embedding, selected } = this.vision.forward(images, { ssvpK: this.ssvpK() });
      const joint = linear(embedding, this.visualProjection);
      return selected ? { embedding, joint, selected } : { embedding, joint };
    });
  }

  private heads(images: Tensor, text: Tensor) {
    const { embedding, joint, selected } = this.encodeImages(images);
    const visionLogits = linear(this.config.visionHeadOn === 'projection' ? joint : embedding, this.headWeight, this.headBias);
    const cos = matmul(l2Normalize(joint), l2Normalize(text), { transB: true }); // (B, C)
    const textLogits = scale(cos, 1 / this.config.temperature);
    return { joint, visionLogits, textLogits, selected };
  }

  /** Stage 1: L_1 = CE(ŷ_1, y) + CE(cos(V, T)/τ, y), text encoder frozen, DaTP prompts trained. */
  stageOne(images: Tensor, labels: Tensor | Int32Array, opts: { labelSmoothing?: number } = {}): StageOneOutput {
    return scope(() => {
      const { visionLogits, textLogits, selected } = this.heads(images, this.textFeatures());
      const lossVision = crossEntropy(visionLogits, labels, opts);
      const lossText = crossEntropy(textLogits, labels, opts);
      const loss = add(lossVision, lossText);
      const out: StageOneOutput = { loss, lossVision, lossText, visionLogits, textLogits };
      if (selected) out.selected = selected;
      return out;
    });
  }

  /**
   * Stage 2: L_2 = CE(ŷ_2, y) with both encoders and DaTP frozen. `text` is T from textFeatures(),
   * computed once per run (it cannot change in stage 2). The image side runs without a tape.
   */
  stageTwo(images: Tensor, labels: Tensor | Int32Array, text: Tensor, opts: { labelSmoothing?: number } = {}): { loss: Tensor; logits: Tensor } {
    return scope(() => {
      const joint = noGrad(() => this.encodeImages(images).joint);
      const logits = this.vlfm.forward(joint, text);
      return { loss: crossEntropy(logits, labels, opts), logits };
    });
  }

  /** Every head's logits/probabilities for evaluation (no tape). `text` from textFeatures(). */
  predict(images: Tensor, text: Tensor): Predictions {
    return noGrad(() =>
      scope(() => {
        const { joint, visionLogits, textLogits, selected } = this.heads(images, text);
        const vlfmLogits = this.vlfm.forward(joint, text);
        const probs = add(add(softmax(visionLogits), softmax(textLogits)), softmax(vlfmLogits));
        const out: Predictions = { vision: visionLogits, text: textLogits, vlfm: vlfmLogits, ensemble: scale(probs, 1 / 3) };
        if (selected) out.selected = selected;
        return out;
      }),
    );
  }

  /** The whole model as safetensors bytes; the config and prompt tokens ride in the metadata. */
  async save(): Promise<Uint8Array> {
    const entries: Parameters<typeof serializeSafetensors>[0] = {};
    for (const [name, v] of await this.stateDict()) entries[name] = { dtype: 'F32', shape: v.shape, data: v.data };
    return serializeSafetensors(entries, { format: FORMAT, config: JSON.stringify(this.config), tokens: JSON.stringify(this.tokens) });
  }

  /** Rebuilds a model saved by save(); fails naming the key or shape at fault. */
  static load(device: Device, bytes: Uint8Array, source = 'mpfgvc.safetensors'): MPFGVC {
    const st = parseSafetensors(bytes, source);
    if (st.metadata.format !== FORMAT) throw new WeightsError(`${source}: not an MP-FGVC checkpoint (format ${JSON.stringify(st.metadata.format ?? null)}, expected '${FORMAT}')`);
    let config: MPFGVCConfig;
    let tokens: PromptTokens;
    try {
      config = JSON.parse(st.metadata.config!) as MPFGVCConfig;
      tokens = JSON.parse(st.metadata.tokens!) as PromptTokens;
    } catch (e) {
      throw new WeightsError(`${source}: unreadable config in the metadata (${(e as Error).message})`);
    }
    const model = new MPFGVC(device, new Rng(0), config, tokens);
    model.load((name, shape) => (st.tensors.has(name) ? readF32(st, name, shape) : undefined), source);
    return model;
  }
}
