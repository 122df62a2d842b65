// Hand-crafted prompts for the fixed-prompt variant (model.prompts 'fixed', the paper's "w/o DaTP"
// baseline): the paper's template filled with each class's name, tokenised by CLIP's tokenizer, or,
// for a from-scratch text tower without one, by a word vocabulary built from the prompts themselves.
import type { PromptTokens } from '@mpfgvc/model';
import { ConfigurationError } from './errors.js';

/** The paper's hand-crafted prompt. */
export const FIXED_PROMPT_TEMPLATE = 'a photo of a {class}, a type of {superCategory}.';

/** Throws unless `template` names the class (a prompt without it would be the same for every class). */
export function validatePromptTemplate(template: unknown): void {
  if (typeof template !== 'string' || !template.includes('{class}')) {
    throw new ConfigurationError(`config: promptTemplate must be a string containing {class} (and optionally {superCategory}), got ${JSON.stringify(template)}`);
  }
}

export function fillPrompt(template: string, className: string, superCategory: string): string {
  return template.replaceAll('{class}', className).replaceAll('{superCategory}', superCategory);
}

function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}'-]+|[^\s\p{L}\p{N}]/gu) ?? [];
}

/**
 * Prompt tokens over a vocabulary of the prompts' own words (punctuation marks are words), for a
 * from-scratch text tower: the super-category's words take the first ids, then SOT and EOT (the
 * synthetic birds' layout: bird 0, SOT 1, EOT 2, so DaTP runs read the same ids), then every other
 * word in order of first appearance. Classes whose names differ get different sequences.
 * `contextLength` is the longest prompt's length with SOT and EOT: the text tower needs at least that.
 */
export function wordPrompts(classes: readonly string[], superCategory: string, template = FIXED_PROMPT_TEMPLATE): { tokens: PromptTokens; vocabulary: string[]; contextLength: number } {
  validatePromptTemplate(template);
  const vocabulary: string[] = [];
  const ids = new Map<string, number>();
  const id = (w: string) => {
    if (!ids.has(w)) {
      ids.set(w, vocabulary.length);
      vocabulary.push(w);
    }
    return ids.get(w)!;
  };
  const classIds = words(superCategory).map(id);
  const sot = id('<|startoftext|>');
  const eot = id('<|endoftext|>');
  const classPrompts = classes.map((c) => words(fillPrompt(template, c, superCategory)).map(id));
  return { tokens: { classIds, sot, eot, classPrompts }, vocabulary, contextLength: Math.max(0, ...classPrompts.map((p) => p.length)) + 2 };
}
