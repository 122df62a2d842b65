import { describe, expect, it } from 'vitest';
import { CLIP_NORMALIZATION, INCEPTION_NORMALIZATION, normalizationStats, parseNormalization } from './normalize.js';

describe('parseNormalization', () => {
  it('takes the names and mean,mean,mean/std,std,std', () => {
    expect(parseNormalization('clip')).toBe('clip');
    expect(normalizationStats(parseNormalization('inception'))).toEqual(INCEPTION_NORMALIZATION);
    expect(normalizationStats(parseNormalization('clip'))).toEqual(CLIP_NORMALIZATION);
    expect(parseNormalization('0.5,0.4,0.3/0.2, 0.25,1')).toEqual({ mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 1] });
  });

  it('refuses anything else, saying what it takes', () => {
    for (const bad of ['', 'imagnet', '0.5,0.5/0.5,0.5,0.5', '0.5,0.5,0.5/0.5,0,0.5', '0.5,0.5,0.5', '0.5,,0.5/1,1,1', 'a,b,c/1,1,1', '1,1,1/1,1,1/1']) {
      expect(() => parseNormalization(bad), bad).toThrow(/expected imagenet, clip, inception or mean,mean,mean\/std,std,std/);
    }
  });
});
