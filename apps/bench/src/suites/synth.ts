// How fast the synthetic birds are drawn, on the host: the demo trains on a newly generated
// training set every epoch, so drawing must stay well ahead of the training step it feeds. One
// core (the main thread), no GPU.
import { birdClasses, generateBird } from '@mpfgvc/train/browser';
import { median } from '../measure.js';
import type { Row } from '../report.js';
import type { SuiteOptions } from './options.js';

/** Images per second drawing the demo's 24 classes at 32² and 64²: the median of repeats after a warm-up pass. */
export function synthRows(opts: SuiteOptions = {}): Row[] {
  const classes = birdClasses(24);
  const count = opts.quick ? 50 : 2000;
  const rows: Row[] = [];
  for (const size of [32, 64]) {
    const out = new Uint8Array(size * size * 3);
    const draw = (seed: number) => {
      for (let i = 0; i < count; i++) generateBird(seed, classes[i % classes.length]!, i, size, out);
    };
    draw(0); // the JIT compiles the raster loops
    const seconds: number[] = [];
    for (let r = 1; r <= (opts.quick ? 1 : 3); r++) {
      const t0 = performance.now();
      draw(r);
      seconds.push((performance.now() - t0) / 1000);
    }
    rows.push({ suite: 'train', name: 'synthetic birds generation', shape: `${size}²`, metric: 'throughput', value: count / median(seconds), unit: 'images/s', note: 'one core, host only' });
  }
  return rows;
}
