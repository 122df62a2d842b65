import { describe, expect, it } from 'vitest';
import { orderRng, sampleRng } from './streams.js';
import { DEFAULT_RRC, centerCropPlan, randomResizedCropBox, roundHalfEven } from './transforms.js';

describe('roundHalfEven', () => {
  it("rounds halves to even like Python's round", () => {
    expect([0.5, 1.5, 2.5, 3.5, 2.4, 2.6, 7].map(roundHalfEven)).toEqual([0, 2, 2, 4, 2, 3, 7]);
  });
});

describe('centerCropPlan', () => {
  it('matches Resize(floor(S / 0.875)) + CenterCrop(S) computed by hand', () => {
    // 500x375 at S = 448: shorter side 375 -> 512, longer 500 * 512 / 375 = 682.67 -> 682;
    // crop offsets (682 - 448) / 2 = 117 and (512 - 448) / 2 = 32.
    expect(centerCropPlan(500, 375, 448, 0.875)).toEqual({ resizeWidth: 682, resizeHeight: 512, crop: { left: 117, top: 32, width: 448, height: 448 } });
    // Portrait: the width is the shorter side.
    expect(centerCropPlan(375, 500, 448, 0.875)).toEqual({ resizeWidth: 512, resizeHeight: 682, crop: { left: 32, top: 117, width: 448, height: 448 } });
  });

  it('truncates the longer side and rounds offsets half to even', () => {
    // 7x3, S = 2, ratio 1: 3 -> 2, 7 -> floor(14 / 3) = 4; left (4 - 2) / 2 = 1.
    expect(centerCropPlan(7, 3, 2, 1)).toEqual({ resizeWidth: 4, resizeHeight: 2, crop: { left: 1, top: 0, width: 2, height: 2 } });
    // 11x8, S = 4, ratio 0.5: shorter side 8 -> 8; left (11 - 4) / 2 = 3.5 -> 4, top 2.
    expect(centerCropPlan(11, 8, 4, 0.5).crop).toEqual({ left: 4, top: 2, width: 4, height: 4 });
    // 9x8: left 2.5 -> 2.
    expect(centerCropPlan(9, 8, 4, 0.5).crop.left).toBe(2);
    expect(() => centerCropPlan(9, 8, 4, 1.5)).toThrow(/cropRatio must be in \(0, 1\]/);
  });
});

describe('randomResizedCropBox', () => {
  it('is a function of (seed, epoch, index)', () => {
    const box = (seed: number, epoch: number, index: number) => randomResizedCropBox(500, 375, sampleRng(seed, epoch, index));
    expect(box(7, 2, 11)).toEqual(box(7, 2, 11));
    const boxes = new Set([box(7, 2, 11), box(8, 2, 11), box(7, 3, 11), box(7, 2, 12)].map((b) => JSON.stringify(b)));
    expect(boxes.size).toBe(4);
  });

  it('draws boxes inside the image with area and ratio in range', () => {
    const [w, h] = [500, 375];
    let fallbacks = 0;
    for (let i = 0; i < 2000; i++) {
      const b = randomResizedCropBox(w, h, sampleRng(1, 0, i));
      expect(b.left >= 0 && b.top >= 0 && b.left + b.width <= w && b.top + b.height <= h).toBe(true);
      const area = (b.width * b.height) / (w * h);
      const ratio = b.width / b.height;
      if (b.width === w && b.height === h) fallbacks++;
      // Rounding w and h to integers moves area and ratio by at most a pixel's worth.
      expect(area).toBeGreaterThan(0.08 * 0.97);
      expect(ratio).toBeGreaterThan((3 / 4) * 0.97);
      expect(ratio).toBeLessThan((4 / 3) * 1.03);
    }
    // Every try fails only when all ten draws fall outside the image: rare at these ranges.
    expect(fallbacks).toBeLessThan(20);
  });

  it('falls back to a central crop at the nearest allowed ratio after ten failed tries', () => {
    // A square image cannot hold a box of ratio >= 2 with >= 99% of its area: every try fails.
    // in_ratio 1 < 2, so w = 100, h = round(100 / 2) = 50, centred: top (100 - 50) // 2 = 25.
    const rng = sampleRng(3, 0, 0);
    expect(randomResizedCropBox(100, 100, rng, { scale: [0.99, 1], ratio: [2, 3] })).toEqual({ left: 0, top: 25, width: 100, height: 50 });
    // in_ratio 1 > 0.5: h = 100, w = round(100 * 0.5) = 50.
    expect(randomResizedCropBox(100, 100, rng, { scale: [0.99, 1], ratio: [0.3, 0.5] })).toEqual({ left: 25, top: 0, width: 50, height: 100 });
    // An image whose ratio (1.2) is allowed: the whole image.
    expect(randomResizedCropBox(24, 20, rng, { scale: [2, 2], ratio: DEFAULT_RRC.ratio })).toEqual({ left: 0, top: 0, width: 24, height: 20 });
    // 30x20 (1.5 > 4/3): w = round(20 * 4/3) = 27, left (30 - 27) // 2 = 1.
    expect(randomResizedCropBox(30, 20, rng, { scale: [2, 2], ratio: DEFAULT_RRC.ratio })).toEqual({ left: 1, top: 0, width: 27, height: 20 });
  });
});

describe('streams', () => {
  it('keeps augmentation and order streams apart', () => {
    expect(sampleRng(1, 2, 0).nextU32()).not.toBe(orderRng(1, 2).nextU32());
    expect(orderRng(1, 2).getState()).toEqual(orderRng(1, 2).getState());
  });
});
