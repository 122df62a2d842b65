// The image encoder I(·): a pre-norm Vision Transformer with SsVP (docs/method.md §2) at the input of
// its last layer. Parameter names are timm's (`blocks.3.attn.qkv.weight`), so a timm checkpoint
// loads by name and the other families (weights/vit-weights.ts) are a name mapping.
//
// Only the CLS output of the last block is used (E_V), so that block computes its queries,
// projection and MLP for the CLS row alone; its keys and values still cover every token.
import {
  type Device,
  type MatmulActivation,
  type Rng,
  type Tensor,
  add,
  concat,
  expand,
  patchEmbed,
  qkvAttention,
  reshape,
  scope,
  shapeStr,
  slice,
  ssvpSelect,
} from '@mpfgvc/kernels';
import { type ViTConfig, numPatches, validateViT } from './config.js';
import { LayerNorm, Linear } from './layers.js';
import { Module } from './module.js';

/** SsVP's K when the caller does not say (docs/method.md §2). */
export const DEFAULT_SSVP_K = 12;

export interface ViTForwardOptions {
  /** Tokens SsVP keeps for the last layer; null or 0 runs the plain ViT. Default DEFAULT_SSVP_K. */
  ssvpK?: number | null;
}

export interface ViTOutput {
  /** E_V (B, D_v): the CLS token after the final LayerNorm. */
  embedding: Tensor;
  /** SsVP's patch ids (B, K) i32, ascending; absent for the plain ViT. */
  selected?: Tensor;
}

/** The patch convolution's parameters (`patch_embed.proj`); CLIP's has no bias. */
class PatchProj extends Module {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  constructor(dev: Device, rng: Rng, cfg: ViTConfig, hasBias: boolean) {
    super(dev, rng);
    const fanIn = cfg.channels * cfg.patchSize * cfg.patchSize;
    this.weight = this.param('weight', [cfg.width, cfg.channels, cfg.patchSize, cfg.patchSize], { normal: 1 / Math.sqrt(fanIn) });
    if (hasBias) this.bias = this.param('bias', [cfg.width], 'zeros');
  }
}

/** A container of named children (`blocks`, `patch_embed`). */
class Group extends Module {
  add<M extends Module>(name: string, m: M): M {
    return this.child(name, m);
  }
}

class Attention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  constructor(dev: Device, rng: Rng, width: number) {
    super(dev, rng);
    this.qkv = this.child('qkv', new Linear(dev, rng, width, 3 * width));
    this.proj = this.child('proj', new Linear(dev, rng, width, width));
  }
}

class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(
    dev: Device,
    rng: Rng,
    width: number,
    hidden: number,
    readonly activation: MatmulActivation,
  ) {
    super(dev, rng);
    this.fc1 = this.child('fc1', new Linear(dev, rng, width, hidden));
    this.fc2 = this.child('fc2', new Linear(dev, rng, hidden, width));
  }
  /** residual + fc2(act(fc1(x))), the residual added in fc2's epilogue. */
  forward(x: Tensor, residual: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(x, this.activation), undefined, residual);
  }
}

interface BlockOptions {
  /** Compute only the CLS row's output (B, 1, D). */
  clsOnly?: boolean;
  /** Also return SsVP's scores (B, T-1) from this block's attention. */
  scores?: boolean;
}

class Block extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  private readonly heads: number;
  constructor(dev: Device, rng: Rng, cfg: ViTConfig) {
    super(dev, rng);
    this.heads = cfg.heads;
    this.norm1 = this.child('norm1', new LayerNorm(dev, rng, cfg.width, cfg.layerNormEps));
    this.attn = this.child('attn', new Attention(dev, rng, cfg.width));
    this.norm2 = this.child('norm2', new LayerNorm(dev, rng, cfg.width, cfg.layerNormEps));
    this.mlp = this.child('mlp', new Mlp(dev, rng, cfg.width, cfg.width * cfg.mlpRatio, cfg.activation));
  }

  /** x (B, T, D) → (B, T, D), or (B, 1, D) with clsOnly. */
  forward(x: Tensor, opts: BlockOptions = {}): { x: Tensor; scores?: Tensor } {
    return scope(() => {
      const T = x.shape[1]!;
      const rows = opts.clsOnly ? 1 : T;
      const qkv = this.attn.qkv.forward(this.norm1.forward(x)); // (B, T, 3D)
      const { out, scores } = qkvAttention(qkv, this.heads, { queries: rows, scores: opts.scores }); // (B, rows, D)
      // Both residual adds ride in the matmuls' epilogues.
      const h = this.attn.proj.forward(out, undefined, opts.clsOnly ? slice(x, 1, 0, 1) : x); // (B, rows, D)
      const y = this.mlp.forward(this.norm2.forward(h), h);
      return scores ? { x: y, scores } : { x: y };
    });
  }
}

/** ViT image encoder with SsVP; returns E_V, the CLS embedding after the final LayerNorm. */
export class VisionTransformer extends Module {
  readonly clsToken: Tensor;
  readonly posEmbed: Tensor;
  private readonly patch: PatchProj;
  private readonly normPre?: LayerNorm;
  private readonly blocks: Block[] = [];
  private readonly norm: LayerNorm;

  constructor(
    dev: Device,
    rng: Rng,
    readonly config: ViTConfig,
  ) {
    super(dev, rng);
    validateViT(config);
    const { width } = config;
    this.clsToken = this.param('cls_token', [1, 1, width], { normal: 1e-6 });
    this.posEmbed = this.param('pos_embed', [1, numPatches(config) + 1, width], { normal: 0.02 });
    // As timm: a pre-norm (CLIP) tower has no patch bias.
    this.patch = this.child('patch_embed', new Group(dev, rng)).add('proj', new PatchProj(dev, rng, config, !config.preNorm));
    if (config.preNorm) this.normPre = this.child('norm_pre', new LayerNorm(dev, rng, width, config.layerNormEps));
    const blocks = this.child('blocks', new Group(dev, rng));
    for (let i = 0; i < config.depth; i++) this.blocks.push(blocks.add(String(i), new Block(dev, rng, config)));
    this.norm = this.child('norm', new LayerNorm(dev, rng, width, config.layerNormEps));
  }

  /** images (B, C, S, S), S = config.imageSize, normalised. */
  forward(images: Tensor, opts: ViTForwardOptions = {}): ViTOutput {
    const cfg = this.config;
    const k = opts.ssvpK === undefined ? DEFAULT_SSVP_K : (opts.ssvpK ?? 0);
    const n = numPatches(cfg);
    const [B, C, H, W] = images.shape;
    if (images.rank !== 4 || C !== cfg.channels || H !== cfg.imageSize || W !== cfg.imageSize) {
      throw new Error(`VisionTransformer: images ${shapeStr(images.shape)}, expected (B, ${cfg.channels}, ${cfg.imageSize}, ${cfg.imageSize})`);
    }
    if (k !== 0 && !(Number.isInteger(k) && k >= 1 && k <= n && cfg.depth >= 2)) {
      throw new Error(`VisionTransformer: ssvpK ${k} needs an integer in [1, ${n}] (the patches) and depth ≥ 2 (depth ${cfg.depth})`);
    }
    return scope(() => {
      const D = cfg.width;
      const patches = patchEmbed(images, this.patch.weight, this.patch.bias, cfg.patchSize); // (B, N, D)
      // [CLS; patches]: the CLS token broadcast over the batch.
      let x = add(concat([expand(this.clsToken, [B!, 1, D]), patches], 1), this.posEmbed); // (B, N+1, D)
      if (this.normPre) x = this.normPre.forward(x);
      let selected: Tensor | undefined;
      const last = cfg.depth - 1;
      for (let i = 0; i < last; i++) {
        const r = this.blocks[i]!.forward(x, { scores: k > 0 && i === last - 1 });
        x = r.x;
        if (r.scores) ({ tokens: x, ids: selected } = ssvpSelect(x, r.scores, k)); // (B, K+1, D)
      }
      const cls = reshape(this.blocks[last]!.forward(x, { clsOnly: true }).x, [B!, D]);
      const embedding = this.norm.forward(cls); // (B, D)
      return selected ? { embedding, selected } : { embedding };
    });
  }
}
