// CLIP's tokenizer, read from a checkpoint's Hugging Face `tokenizer.json` and run by the
// maintained pure-JS port of HF tokenizers. That file already encodes every step of OpenAI's
// `simple_tokenizer.py` that matters here: NFC, runs of whitespace to one space, lowercase, the
// split pattern (<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
// [^\s\p{L}\p{N}]+, whitespace between matches dropped), byte-to-unicode mapping and BPE with
// `</w>` word ends. What it does not encode (ftfy's mojibake repair and HTML unescaping) HF's fast
// CLIP tokenizer skips too. The tests check the ids against a reference re-written from OpenAI's.
import { Tokenizer } from '@huggingface/tokenizers';
import { z } from 'zod';
import { parseWith } from './schema.js';

// The package's declaration files import each other without file extensions, which NodeNext
// resolution cannot follow, so its classes arrive untyped: this is the part we use, typed.
interface HfTokenizer {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], opts: { skip_special_tokens: boolean }): string;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}

const SOT = '<|startoftext|>';
const EOT = '<|endoftext|>';

/** Token ids laid out as CLIP's `tokenize()`: each row SOT, tokens, EOT, then zeros. */
export interface TokenBatch {
  ids: Int32Array; // (batch, length)
  batch: number;
  length: number;
  /** Position of EOT in each row (CLIP pools the text there). */
  eot: Int32Array; // (batch)
}

export class TokenizerError extends Error {
  override name = 'TokenizerError';
}

interface TokenizerJson {
  model?: { type?: string; end_of_word_suffix?: string | null; vocab?: Record<string, number> };
  added_tokens?: { id: number; content: string }[];
}

/** Far above CLIP's 49408; a vocabulary or merge list beyond these is not a tokenizer we can use. */
const MAX_VOCAB = 1_000_000;
const MAX_MERGES = 2_000_000;
const MAX_ADDED = 10_000;

const tokenId = z.int().min(0).max(MAX_VOCAB - 1);

/**
 * The parts of tokenizer.json the tokenizer library sizes its tables by: ids must be small integers
 * (an added token with id 1e9 would make it build a table of a billion entries), merges pairs.
 */
const tokenizerJsonSchema = z.looseObject({
  model: z.looseObject({
    type: z.string(),
    vocab: z.record(z.string(), tokenId).refine((v) => Object.keys(v).length <= MAX_VOCAB, `holds more than ${MAX_VOCAB} tokens`),
    merges: z.array(z.union([z.string(), z.tuple([z.string(), z.string()])])).max(MAX_MERGES).optional(),
  }),
  added_tokens: z.array(z.looseObject({ id: tokenId, content: z.string().max(1000) })).max(MAX_ADDED).optional(),
});

export class ClipTokenizer {
  /** Id of <|startoftext|>. */
  readonly sot: number;
  /** Id of <|endoftext|>. */
  readonly eot: number;
  readonly vocabSize: number;

  private constructor(
    private readonly tok: HfTokenizer,
    /** Longest sequence the text encoder takes, SOT and EOT included (77). */
    readonly contextLength: number,
    source: string,
  ) {
    const sot = tok.token_to_id(SOT);
    const eot = tok.token_to_id(EOT);
    if (sot === undefined || eot === undefined) throw new TokenizerError(`${source}: no ${SOT} / ${EOT} tokens; not a CLIP tokenizer`);
    this.sot = sot;
    this.eot = eot;
    this.vocabSize = tok.get_vocab(true).size;
  }

  /** From the text of a `tokenizer.json`; text that is not JSON is a TokenizerError too. */
  static fromText(text: string, opts: { contextLength?: number; source?: string } = {}): ClipTokenizer {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new TokenizerError(`${opts.source ?? 'tokenizer.json'}: not JSON (${(e as Error).message})`);
    }
    return ClipTokenizer.fromJson(json, opts);
  }

  /**
   * From the parsed contents of a `tokenizer.json` (HF format). `source` names it in errors. Only
   * CLIP's kind is accepted (byte-level BPE with `</w>` word ends): another BPE would tokenise
   * without complaint and give ids the text encoder was never trained on.
   */
  static fromJson(json: unknown, opts: { contextLength?: number; source?: string } = {}): ClipTokenizer {
    const source = opts.source ?? 'tokenizer.json';
    const j = json as TokenizerJson;
    if (!j || typeof j !== 'object' || j.model?.type !== 'BPE' || typeof j.model.vocab !== 'object') {
      throw new TokenizerError(`${source}: expected a BPE tokenizer.json, got model type ${JSON.stringify(j?.model?.type)}`);
    }
    if (j.model.end_of_word_suffix !== '</w>') {
      throw new TokenizerError(`${source}: end_of_word_suffix is ${JSON.stringify(j.model.end_of_word_suffix)}, CLIP's BPE uses "</w>"`);
    }
    const checked = parseWith(tokenizerJsonSchema, json, source, (m) => new TokenizerError(m));
    // Ids index one table: each must lie below the number of tokens there are.
    const size = Object.keys(checked.model.vocab).length + (checked.added_tokens?.length ?? 0);
    for (const [token, id] of Object.entries(checked.model.vocab)) {
      if (id >= size) throw new TokenizerError(`${source}: model.vocab gives ${JSON.stringify(token.slice(0, 40))} id ${id}, beyond the ${size} tokens there are`);
    }
    for (const [i, t] of (checked.added_tokens ?? []).entries()) {
      if (t.id >= size) throw new TokenizerError(`${source}: added_tokens[${i}] has id ${t.id}, beyond the ${size} tokens there are`);
    }
    const contextLength = opts.contextLength ?? 77;
    if (!(Number.isInteger(contextLength) && contextLength >= 2)) throw new TokenizerError(`${source}: context length ${contextLength} leaves no room for SOT and EOT`);
    let tok: HfTokenizer;
    try {
      tok = new Tokenizer(j, {});
    } catch (e) {
      throw new TokenizerError(`${source}: the tokenizer library cannot build it (${(e as Error).message})`);
    }
    return new ClipTokenizer(tok, contextLength, source);
  }

  /** The text's token ids, without SOT and EOT. */
  encode(text: string): number[] {
    try {
      return this.tok.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      throw new TokenizerError(`cannot tokenise ${JSON.stringify(text.slice(0, 60))}: ${(e as Error).message}`);
    }
  }

  /**
   * [SOT, tokens, EOT]. Longer than the context length it throws, or with `truncate` keeps the
   * first tokens and ends with EOT, as CLIP's `tokenize(truncate=True)`.
   */
  encodeWithSpecials(text: string, opts: { truncate?: boolean } = {}): number[] {
    const ids = [this.sot, ...this.encode(text), this.eot];
    if (ids.length <= this.contextLength) return ids;
    if (!opts.truncate) throw new TokenizerError(`text of ${ids.length} tokens (SOT and EOT included) exceeds the context length ${this.contextLength}: "${text.slice(0, 60)}…"`);
    ids.length = this.contextLength;
    ids[this.contextLength - 1] = this.eot;
    return ids;
  }

  /**
   * A batch in CLIP's layout. Rows are `length` long (default: the context length; the text
   * encoder only runs up to the last EOT, so shorter rows save nothing there but host memory).
   */
  encodeBatch(texts: readonly string[], opts: { truncate?: boolean; length?: number } = {}): TokenBatch {
    const rows = texts.map((t) => this.encodeWithSpecials(t, opts));
    const length = opts.length ?? this.contextLength;
    const longest = Math.max(0, ...rows.map((r) => r.length));
    if (length > this.contextLength || length < longest) {
      throw new TokenizerError(`batch length ${length} must lie in [${longest}, ${this.contextLength}] (longest row, context length)`);
    }
    const ids = new Int32Array(texts.length * length);
    const eot = new Int32Array(texts.length);
    rows.forEach((r, b) => {
      ids.set(r, b * length);
      eot[b] = r.length - 1;
    });
    return { ids, batch: texts.length, length, eot };
  }

  /** Text back from ids (SOT/EOT dropped), for logs and demos. */
  decode(ids: readonly number[]): string {
    const kept = ids.filter((i) => i !== this.sot && i !== this.eot);
    return kept.length ? this.tok.decode(kept, { skip_special_tokens: true }).trim() : '';
  }
}
