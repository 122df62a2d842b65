// The text encoder T(·): CLIP's causal text transformer (docs/method.md §4). Parameter names are Hugging
// Face's CLIPTextModelWithProjection (`text_model.encoder.layers.3.self_attn.q_proj.weight`,
// `text_projection.weight`), so an HF CLIP checkpoint loads with no name mapping at all.
//
// The text is pooled at EOT, and under the causal mask no position depends on a later one: every
// sequence is run only up to its EOT (the longest EOT in a batch), never to the context length.
import {
  type Device,
  type Rng,
  type Tensor,
  add,
  attention,
  embedding,
  gatherRows,
  linear,
  permute,
  reshape,
  scope,
  shapeStr,
  slice,
  tensor,
} from '@mpfgvc/kernels';
import { ConfigError, MODEL_LIMITS, type TextConfig, validateText } from './config.js';
import { LayerNorm, Linear } from './layers.js';
import { Module } from './module.js';
import type { TokenBatch } from './tokenizer.js';

/** A pre-norm block: x + attn(ln1(x)), then + mlp(ln2(·)). */
class EncoderLayer extends Module {
  private readonly q: Linear;
  private readonly k: Linear;
  private readonly v: Linear;
  private readonly out: Linear;
  private readonly ln1: LayerNorm;
  private readonly ln2: LayerNorm;
  private readonly fc1: Linear;
  private readonly fc2: Linear;

  constructor(
    dev: Device,
    rng: Rng,
    private readonly cfg: TextConfig,
  ) {
    super(dev, rng);
    const w = cfg.width;
    // q, k and v stay separate, as in the checkpoint: each output viewed as (B, H, L, d) is
    // already the layout the fused attention reads, so fusing them would save no copy.
    this.q = this.child('self_attn.q_proj', new Linear(dev, rng, w, w));
    this.k = this.child('self_attn.k_proj', new Linear(dev, rng, w, w));
    this.v = this.child('self_attn.v_proj', new Linear(dev, rng, w, w));
    this.out = this.child('self_attn.out_proj', new Linear(dev, rng, w, w));
    this.ln1 = this.child('layer_norm1', new LayerNorm(dev, rng, w, cfg.layerNormEps));
    this.fc1 = this.child('mlp.fc1', new Linear(dev, rng, w, w * cfg.mlpRatio));
    this.fc2 = this.child('mlp.fc2', new Linear(dev, rng, w * cfg.mlpRatio, w));
    this.ln2 = this.child('layer_norm2', new LayerNorm(dev, rng, w, cfg.layerNormEps));
  }

  forward(x: Tensor): Tensor {
    return scope(() => {
      const [B, L, W] = x.shape as [number, number, number];
      const H = this.cfg.heads;
      const split = (t: Tensor) => permute(reshape(t, [B, L, H, W / H]), [0, 2, 1, 3]); // (B, H, L, d), a view
      const a = this.ln1.forward(x);
      const o = attention(split(this.q.forward(a)), split(this.k.forward(a)), split(this.v.forward(a)), { causal: true }); // (B, H, L, d)
      // Both residual adds ride in the matmuls' epilogues.
      const h = this.out.forward(reshape(permute(o, [0, 2, 1, 3]), [B, L, W]), undefined, x);
      return this.fc2.forward(this.fc1.forward(this.ln2.forward(h), this.cfg.activation), undefined, h);
    });
  }
}

/** HF's `text_model`: embeddings, the layers and the final LayerNorm. */
class TextTransformer extends Module {
  readonly tokenEmbedding: Tensor;
  readonly positionEmbedding: Tensor;
  readonly layers: EncoderLayer[] = [];
  readonly finalNorm: LayerNorm;

  constructor(dev: Device, rng: Rng, cfg: TextConfig) {
    super(dev, rng);
    this.tokenEmbedding = this.param('embeddings.token_embedding.weight', [cfg.vocabSize, cfg.width], { normal: 0.02 });
    this.positionEmbedding = this.param('embeddings.position_embedding.weight', [cfg.contextLength, cfg.width], { normal: 0.01 });
    for (let i = 0; i < cfg.depth; i++) this.layers.push(this.child(`encoder.layers.${i}`, new EncoderLayer(dev, rng, cfg)));
    this.finalNorm = this.child('final_layer_norm', new LayerNorm(dev, rng, cfg.width, cfg.layerNormEps));
  }
}

/** CLIP's text tower with its projection into the joint space: text → T ∈ R^D. */
export class ClipTextEncoder extends Module {
  readonly textModel: TextTransformer;
  /** (D, D_t), a bias-free linear map. */
  readonly projection: Tensor;

  constructor(
    dev: Device,
    rng: Rng,
    readonly cfg: TextConfig,
    /** D, the joint embedding width (HF's projection_dim). */
    readonly embedDim: number,
  ) {
    super(dev, rng);
    validateText(cfg);
    if (!(Number.isInteger(embedDim) && embedDim > 0 && embedDim <= MODEL_LIMITS.width)) throw new ConfigError(`embedDim must be an integer in [1, ${MODEL_LIMITS.width}], got ${embedDim}`);
    this.textModel = this.child('text_model', new TextTransformer(dev, rng, cfg));
    this.projection = this.param('text_projection.weight', [embedDim, cfg.width], { normal: 1 / Math.sqrt(cfg.width) });
  }

  /** Rows of the token embedding table for i32 ids of any shape: (...ids.shape, D_t). */
  tokenEmbeddings(ids: Tensor): Tensor {
    return embedding(this.textModel.tokenEmbedding, ids);
  }

  /**
   * T (B, D) from input embeddings x (B, L, D_t) (positions 0..L-1 are added here) pooled at
   * `eot`: one position for every row, or one per row. L may be anything up to the context
   * length; rows need nothing after their EOT.
   */
  encodeEmbeddings(x: Tensor, eot: number | Int32Array): Tensor {
    const { width, contextLength } = this.cfg;
    const [B, L] = x.shape as [number, number];
    if (x.rank !== 3 || x.shape[2] !== width || L > contextLength) {
      throw new Error(`text encoder: input embeddings must be (B, L ≤ ${contextLength}, ${width}), got ${shapeStr(x.shape)}`);
    }
    const positions = typeof eot === 'number' ? [eot] : Array.from(eot);
    if (typeof eot !== 'number' && eot.length !== B) throw new Error(`text encoder: ${eot.length} EOT positions for a batch of ${B}`);
    if (positions.some((p) => !(Number.isInteger(p) && p >= 0 && p < L))) throw new Error(`text encoder: EOT positions [${positions.join(', ')}] outside [0, ${L})`);
    return scope(() => {
      let h = add(x, slice(this.textModel.positionEmbedding, 0, 0, L)); // (B, L, D_t)
      for (const layer of this.textModel.layers) h = layer.forward(h);
      // The final LayerNorm is row-wise: normalising only the pooled rows gives the same T.
      const pooled =
        typeof eot === 'number'
          ? reshape(slice(h, 1, eot, eot + 1), [B, width])
          : reshape(gatherRows(h, tensor(this.device, eot, [B, 1])), [B, width]);
      return linear(this.textModel.finalNorm.forward(pooled), this.projection); // (B, D)
    });
  }

  /** T (B, D) of tokenised text (CLIP's layout, e.g. ClipTokenizer.encodeBatch), run up to the last EOT. */
  forward(batch: TokenBatch): Tensor {
    const L = Math.max(...batch.eot) + 1;
    const ids = new Int32Array(batch.batch * L);
    for (let b = 0; b < batch.batch; b++) ids.set(batch.ids.subarray(b * batch.length, b * batch.length + L), b * L);
    return scope(() => this.encodeEmbeddings(this.tokenEmbeddings(tensor(this.device, ids, [batch.batch, L])), batch.eot));
  }
}
