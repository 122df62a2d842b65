import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { assertClose } from '@mpfgvc/kernels/testing';
import { bicubicResize, parseSafetensors, resizePosEmbed } from './index.js';

// torch's F.interpolate(mode='bicubic', align_corners=False) in float64, from scripts/vit_fixtures.py.
const st = parseSafetensors(new Uint8Array(readFileSync(new URL('../fixtures/vit_pos_embed.safetensors', import.meta.url))), 'vit_pos_embed');
const f64 = (key: string) => new Float64Array(st.tensors.get(key)!.bytes.slice().buffer);

describe('position-embedding resize', () => {
  const pos = f64('pos'); // (1, 1 + 7·7, 5)
  for (const [h, w] of [
    [12, 12],
    [5, 5],
    [9, 14],
  ] as const) {
    it(`7x7 to ${h}x${w} matches torch's bicubic interpolate, CLS kept`, () => {
      const want = f64(`resized_${h}x${w}`);
      const grid = bicubicResize(pos.subarray(5), [7, 7], [h, w], 5);
      assertClose(grid, want.subarray(5), { atol: 1e-12, rtol: 1e-12 }, `grid ${h}x${w}`);
      const resized = resizePosEmbed(Float32Array.from(pos), 5, [h, w]);
      expect(resized.length).toBe((1 + h * w) * 5);
      assertClose(resized, want, { atol: 1e-6, rtol: 1e-6 }, `pos_embed ${h}x${w}`);
      expect(Array.from(resized.subarray(0, 5))).toEqual(Array.from(Float32Array.from(pos.subarray(0, 5))));
    });
  }

  it('returns the input when the grid already matches, and rejects a non-square source', () => {
    const pos = new Float32Array((1 + 16) * 3);
    expect(resizePosEmbed(pos, 3, [4, 4])).toBe(pos);
    expect(() => resizePosEmbed(new Float32Array((1 + 15) * 3), 3, [4, 4])).toThrow('resizePosEmbed: 15 patch positions do not form a square grid');
  });
});
