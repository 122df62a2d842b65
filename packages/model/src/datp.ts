// DaTP, the Discrepancy-aware Text Prompt (docs/method.md §5): for each subcategory c, J learnable
// token embeddings X^c placed between SOT and the super-category's tokens,
// [SOT, X^c_1..X^c_J, tokens(class++), EOT], at CLIP's positions 0..J+n+1, through the frozen text
// encoder; T^c is its output at EOT. The sequence stops at EOT (J+n+2 tokens, not the context
// length): under the causal mask nothing after EOT reaches it.
import { type Device, type Rng, type Tensor, concat, expand, keep, scope, slice, tensor } from '@mpfgvc/kernels';
import { Module } from './module.js';
import type { ClipTextEncoder } from './text.js';

export interface DatpConfig {
  numClasses: number; // C
  promptLength: number; // J, 16
  width: number; // D_t, the text encoder's token width
}

export class Datp extends Module {
  /** X (C, J, D_t), the only trained tensor of the text side. */
  readonly prompts: Tensor;
  /** [SOT, class++ tokens, EOT] (n+2) i32: the rows taken from the frozen embedding table. */
  private readonly fixedIds: Tensor;
  /** J + n + 2: the prompt's tokens up to and including EOT. */
  readonly length: number;

  constructor(
    dev: Device,
    rng: Rng,
    readonly cfg: DatpConfig,
    /** The super-category's token ids, without SOT and EOT (ClipTokenizer.encode('bird')). */
    readonly classIds: readonly number[],
    sot: number,
    eot: number,
  ) {
    super(dev, rng);
    for (const k of ['numClasses', 'promptLength', 'width'] as const) {
      if (!(Number.isInteger(cfg[k]) && cfg[k] > 0)) throw new Error(`DaTP: ${k} must be a positive integer, got ${cfg[k]}`);
    }
    this.prompts = this.param('prompts', [cfg.numClasses, cfg.promptLength, cfg.width], { normal: 0.02 });
    this.fixedIds = keep(tensor(dev, Int32Array.from([sot, ...classIds, eot]), [classIds.length + 2]));
    this.length = cfg.promptLength + classIds.length + 2;
  }

  /** The input embeddings (C, J+n+2, D_t): SOT, X^c, class++, EOT rows (positions not yet added). */
  embeddings(text: ClipTextEncoder): Tensor {
    const { numClasses: C, width: W } = this.cfg;
    if (text.cfg.width !== W) throw new Error(`DaTP: prompts are ${W} wide, the text encoder's tokens ${text.cfg.width}`);
    if (this.length > text.cfg.contextLength) throw new Error(`DaTP: ${this.length} tokens exceed the text context length ${text.cfg.contextLength}`);
    return scope(() => {
      const fixed = text.tokenEmbeddings(this.fixedIds); // (n+2, D_t)
      const n = this.classIds.length;
      const sot = expand(slice(fixed, 0, 0, 1), [C, 1, W]);
      const rest = expand(slice(fixed, 0, 1, n + 2), [C, n + 1, W]);
      return concat([sot, this.prompts, rest], 1); // (C, J+n+2, D_t)
    });
  }

  /** T (C, D): every subcategory's text embedding. Gradients reach X (and the encoder where it is trainable). */
  forward(text: ClipTextEncoder): Tensor {
    return scope(() => text.encodeEmbeddings(this.embeddings(text), this.length - 1));
  }

  override dispose(): void {
    this.fixedIds.dispose();
    super.dispose();
  }
}
