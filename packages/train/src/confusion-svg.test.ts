import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { MAX_LABELLED, confusionSvg } from './confusion-svg.js';

const cellsOf = (svg: string) => [...svg.matchAll(/<rect [^>]*><title>([^<]*)<\/title><\/rect>/g)].map((m) => m[1]);

describe('confusionSvg', () => {
  it('draws one shaded cell per non-empty pair, labels both axes with the class names, and rasterises', async () => {
    const svg = confusionSvg(['red <beak>', 'blue & crest', 'tail\u0001'], [
      [3, 1, 0],
      [0, 2, 0],
      [0, 4, 0],
    ], { title: 'stage 2' });
    expect(cellsOf(svg)).toEqual(['red &lt;beak&gt; → red &lt;beak&gt;: 3 of 4', 'red &lt;beak&gt; → blue &amp; crest: 1 of 4', 'blue &amp; crest → blue &amp; crest: 2 of 2', 'tail → blue &amp; crest: 4 of 4']);
    // The full share is the darkest shade; a quarter is a light one.
    expect(svg).toContain('fill="rgb(8,48,107)"><title>blue &amp; crest → blue &amp; crest');
    expect(svg).toContain('fill="rgb(193,203,218)"><title>red &lt;beak&gt; → blue');
    expect(svg.match(/>red &lt;beak&gt;<\/text>/g)).toHaveLength(2);
    expect(svg).not.toContain('\u0001');
    const meta = await sharp(Buffer.from(svg)).metadata();
    expect(meta.format).toBe('svg');
    expect((await sharp(Buffer.from(svg)).png().toBuffer()).length).toBeGreaterThan(0);
  });

  it('gives indices instead of names beyond MAX_LABELLED classes, drawing only the non-empty cells', () => {
    const C = MAX_LABELLED + 140;
    const classes = Array.from({ length: C }, (_, i) => `class ${i}`);
    const confusion = classes.map((_, i) => classes.map((__, j) => (j === i ? 2 : j === (i + 1) % C ? 1 : 0)));
    const svg = confusionSvg(classes, confusion);
    expect(cellsOf(svg)).toHaveLength(2 * C);
    expect(svg).not.toContain('>class 0</text>');
    expect(svg).toContain('>100</text>');
  });
});
