import { describe, expect, it } from 'vitest';
import { birdClasses, generateBird } from './birds.js';

// Generation speed on one core; the demo regenerates its data set on every run.
describe('synthetic bird generation speed', () => {
  it.each([32, 64])('renders %ipx images fast enough to regenerate the demo data in seconds', (size) => {
    const classes = birdClasses(24);
    const out = new Uint8Array(size * size * 3);
    for (let i = 0; i < 200; i++) generateBird(0, classes[i % 24]!, i, size, out);
    const n = 2000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) generateBird(1, classes[i % 24]!, i, size, out);
    const rate = n / ((performance.now() - t0) / 1000);
    console.log(`synthetic birds ${size}x${size}: ${rate.toFixed(0)} images/s on one core`);
    // Far below the measured rate: only a gross slowdown (or a much slower CI machine) trips it.
    expect(rate).toBeGreaterThan(200);
  });
});
