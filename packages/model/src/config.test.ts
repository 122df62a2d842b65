import { describe, expect, it } from 'vitest';
import { VIT_B16_448, numPatches, validateViT } from './index.js';

describe('ViT config', () => {
  it('ViT-B/16 at 448 has 28x28 patches', () => {
    expect(numPatches(VIT_B16_448)).toBe(784);
    expect(() => validateViT(VIT_B16_448)).not.toThrow();
  });
  it('names the field at fault', () => {
    expect(() => validateViT({ ...VIT_B16_448, imageSize: 450 })).toThrow('vision.imageSize: 450 is not a multiple of patchSize 16');
    expect(() => validateViT({ ...VIT_B16_448, heads: 7 })).toThrow('vision.heads: width 768 is not divisible by 7 heads');
    expect(() => validateViT({ ...VIT_B16_448, depth: 1e6 })).toThrow('vision.depth: expected at most 256, got 1000000');
    expect(() => validateViT({ ...VIT_B16_448, layerNormEps: -1e-6 })).toThrow('vision.layerNormEps: expected more than 0, got -0.000001');
  });
});
