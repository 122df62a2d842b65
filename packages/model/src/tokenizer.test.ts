// The ids are those of scripts/text_fixtures.py, whose tokenizer is OpenAI's simple_tokenizer.py
// algorithm re-written with plain unicodedata (no regex engine, no HF code), over the same tiny
// BPE vocabulary that tokenizer-clip-tiny.json holds in HF's CLIP format.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ClipTokenizer, TokenizerError } from './index.js';

const fixture = (name: string) => JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8'));
const json = fixture('tokenizer-clip-tiny.json');
const cases = fixture('tokenizer-cases.json') as { name: string; text: string; ids: number[] }[];
const tok = ClipTokenizer.fromJson(json);

describe('ClipTokenizer', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    expect(tok.encode(c.text)).toEqual(c.ids);
  });

  it('knows SOT, EOT, the vocabulary and the context', () => {
    expect(tok.sot).toBe(json.model.vocab['<|startoftext|>']);
    expect(tok.eot).toBe(json.model.vocab['<|endoftext|>']);
    expect(tok.vocabSize).toBe(Object.keys(json.model.vocab).length);
    expect(tok.contextLength).toBe(77);
  });

  it('lays a batch out as CLIP does: SOT, tokens, EOT, zeros; EOT positions', () => {
    const texts = ['a photo of a bird', 'Hello, world!!! (red-winged) ...?', ''];
    const b = tok.encodeBatch(texts);
    expect([b.batch, b.length, b.ids.length]).toEqual([3, 77, 3 * 77]);
    texts.forEach((t, i) => {
      const want = [tok.sot, ...tok.encode(t), tok.eot];
      const row = Array.from(b.ids.subarray(i * 77, (i + 1) * 77));
      expect(row.slice(0, want.length)).toEqual(want);
      expect(row.slice(want.length).every((v) => v === 0)).toBe(true);
      expect(b.eot[i]).toBe(want.length - 1);
    });
    expect(tok.encodeBatch(texts, { length: 30 }).ids.length).toBe(90);
    expect(() => tok.encodeBatch(texts, { length: 5 })).toThrow(/batch length 5 must lie in \[\d+, 77\]/);
  });

  it('refuses or truncates text longer than the context', () => {
    const long = 'bird '.repeat(80);
    expect(() => tok.encodeWithSpecials(long)).toThrow(/82 tokens .* exceeds the context length 77/);
    const ids = tok.encodeWithSpecials(long, { truncate: true });
    expect(ids.length).toBe(77);
    expect([ids[0], ids[75], ids[76]]).toEqual([tok.sot, tok.encode('bird')[0], tok.eot]);
  });

  it('decodes back to the cleaned text', () => {
    expect(tok.decode(tok.encodeWithSpecials('A  Photo of\ta BIRD!'))).toBe('a photo of a bird!');
  });

  it('rejects tokenizers that are not CLIP BPE, naming why', () => {
    expect(() => ClipTokenizer.fromJson({ model: { type: 'WordPiece', vocab: {} } }, { source: 'bert/tokenizer.json' })).toThrow(
      new TokenizerError('bert/tokenizer.json: expected a BPE tokenizer.json, got model type "WordPiece"'),
    );
    const gpt2 = { ...json, model: { ...json.model, end_of_word_suffix: null } };
    expect(() => ClipTokenizer.fromJson(gpt2)).toThrow(/end_of_word_suffix is null, CLIP's BPE uses "<\/w>"/);
  });

  it('refuses ids beyond its tables at once instead of building them (an added token with id 1e9)', () => {
    const json = JSON.parse(readFileSync(new URL('../fixtures/tokenizer-clip-tiny.json', import.meta.url), 'utf8'));
    const started = performance.now();
    const added = { ...json, added_tokens: [...json.added_tokens, { ...json.added_tokens[0], id: 1e9, content: 'x' }] };
    expect(() => ClipTokenizer.fromJson(added, { source: 't.json' })).toThrow('t.json: added_tokens[2].id: expected at most 999999, got 1000000000');
    const beyond = { ...json, added_tokens: [...json.added_tokens, { ...json.added_tokens[0], id: 5000, content: 'x' }] };
    expect(() => ClipTokenizer.fromJson(beyond, { source: 't.json' })).toThrow(/^t.json: added_tokens\[2\] has id 5000, beyond the \d+ tokens there are$/);
    expect(() => ClipTokenizer.fromText('{"model"', { source: 't.json' })).toThrow(/^t.json: not JSON/);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});
