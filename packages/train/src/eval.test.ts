import { describe, expect, it } from 'vitest';
import { confusionCsv, rankOf } from './eval.js';

describe('rankOf', () => {
  it('counts the classes scored above the label, ties going to the lower index as argmax does', () => {
    const s = Float32Array.from([9, 0.1, 0.5, 0.5, 0.3, 0.2]); // one row of 5 at offset 1
    expect(rankOf(s, 1, 5, 1)).toBe(0);
    expect(rankOf(s, 1, 5, 2)).toBe(1);
    expect(rankOf(s, 1, 5, 0)).toBe(4);
  });
});

describe('confusionCsv', () => {
  it('writes a header of predicted classes and one row per true class, quoting where CSV needs it', () => {
    expect(confusionCsv(['a', 'b, c'], [[3, 1], [0, 2]])).toBe('true \\ predicted,a,"b, c"\na,3,1\n"b, c",0,2\n');
  });
});
