import { describe, expect, it } from 'vitest';
import { learningRate, validateSchedule } from './schedule.js';

describe('learningRate', () => {
  it('warms up linearly, then follows a half cosine from base to minLr', () => {
    const s = { base: 1, warmup: 4, total: 14, minLr: 0.1 };
    expect([0, 1, 2, 3].map((t) => learningRate(s, t))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(learningRate(s, 4)).toBe(1);
    // Half-way through the cosine: the mean of base and minLr.
    expect(learningRate(s, 4 + 4.5)).toBeCloseTo(0.55, 12);
    expect(learningRate(s, 13)).toBeCloseTo(0.1, 12);
    const lrs = Array.from({ length: 10 }, (_, t) => learningRate(s, 4 + t));
    expect(lrs.every((v, i) => i === 0 || v < lrs[i - 1]!)).toBe(true);
  });

  it('without warm-up starts at base; a single step runs at base', () => {
    expect(learningRate({ base: 0.3, warmup: 0, total: 5, minLr: 0 }, 0)).toBe(0.3);
    expect(learningRate({ base: 0.3, warmup: 0, total: 1, minLr: 0 }, 0)).toBe(0.3);
  });

  it('rejects schedules it cannot run, naming the field', () => {
    expect(() => validateSchedule({ base: 1, warmup: 3, total: 2, minLr: 0 })).toThrow(/warm-up steps must be an integer in \[0, 2\], got 3/);
    expect(() => validateSchedule({ base: 1, warmup: 0, total: 0, minLr: 0 })).toThrow(/total steps/);
    expect(() => validateSchedule({ base: 1, warmup: 0, total: 3, minLr: 2 })).toThrow(/minLr must be in \[0, lr = 1\], got 2/);
  });
});
