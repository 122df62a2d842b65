import { describe, expect, it } from 'vitest';
import { FIXED_PROMPT_TEMPLATE, fillPrompt, wordPrompts } from './prompts.js';

describe('fixed prompts', () => {
  it("fill the paper's template with the class and super-category", () => {
    expect(fillPrompt(FIXED_PROMPT_TEMPLATE, 'Cardinal', 'bird')).toBe('a photo of a Cardinal, a type of bird.');
  });

  it('over a word vocabulary give each class its own sequence, the super-category and SOT/EOT first', () => {
    const { tokens, vocabulary, contextLength } = wordPrompts(['long-beak red-eyering', 'short-beak red-eyering'], 'bird');
    expect(contextLength).toBe(14);
    expect(vocabulary.slice(0, 3)).toEqual(['bird', '<|startoftext|>', '<|endoftext|>']);
    expect(tokens).toMatchObject({ classIds: [0], sot: 1, eot: 2 });
    const [a, b] = tokens.classPrompts!.map((p) => p.map((i) => vocabulary[i]));
    expect(a).toEqual(['a', 'photo', 'of', 'a', 'long-beak', 'red-eyering', ',', 'a', 'type', 'of', 'bird', '.']);
    expect(b).toEqual(['a', 'photo', 'of', 'a', 'short-beak', 'red-eyering', ',', 'a', 'type', 'of', 'bird', '.']);
    expect(new Set(vocabulary).size).toBe(vocabulary.length);
    expect(() => wordPrompts(['x'], 'bird', 'a photo')).toThrow('config: promptTemplate must be a string containing {class}');
  });
});
