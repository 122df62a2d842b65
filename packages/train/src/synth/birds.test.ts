import { Rng } from '@mpfgvc/kernels';
import { describe, expect, it } from 'vitest';
import { BEAKS, type BirdAttributes, EYE_RINGS, MAX_BIRD_CLASSES, TAILS, WING_BARS, birdClasses, birdToPixel, generateBird, imageSeed, partDistance, renderBird, sampleScene } from './birds.js';

describe('birdClasses', () => {
  it('gives 24 distinct, readable classes by default-sized tables, nested for smaller counts', () => {
    const classes = birdClasses(24);
    expect(classes).toHaveLength(24);
    expect(new Set(classes.map((c) => c.name)).size).toBe(24);
    expect(new Set(classes.map((c) => c.dirName)).size).toBe(24);
    expect(classes.map((c) => c.index)).toEqual([...Array(24).keys()]);
    expect(classes[0]!.dirName).toMatch(/^001\.[a-z-]+(_[a-z-]+)+$/);
    expect(birdClasses(20)).toEqual(classes.slice(0, 20));
    for (const c of classes) {
      expect(c.name).toContain(`${c.attributes.beak}-beak`);
      expect(c.name).toContain(`${c.attributes.eyeRing}-eyering`);
      expect(c.description).toContain(`${c.attributes.eyeRing} ring around the eye`);
      expect(c.description.startsWith('a bird with ')).toBe(true);
    }
  });

  it('defines classes by part attributes only, every part varying across the table', () => {
    const classes = birdClasses(24);
    let minDist = Infinity;
    for (let i = 0; i < classes.length; i++) {
      for (let j = i + 1; j < classes.length; j++) minDist = Math.min(minDist, partDistance(classes[i]!.attributes, classes[j]!.attributes));
    }
    // Farthest-point ordering keeps 24 classes at least two parts apart.
    expect(minDist).toBeGreaterThanOrEqual(2);
    const seen = (key: keyof BirdAttributes) => new Set(classes.map((c) => String(c.attributes[key])));
    expect(seen('beak').size).toBe(BEAKS.length);
    expect(seen('eyeRing').size).toBe(EYE_RINGS.length);
    expect(seen('wingBar').size).toBe(WING_BARS.length);
    expect(seen('tail').size).toBe(TAILS.length);
    expect(seen('crest').size).toBe(2);
    // Balanced values and pairs of values: no beak shape owns most of the classes, and no beak
    // shape comes with one eye-ring colour only (the eye would then stand in for the beak).
    for (const beak of BEAKS) {
      const withBeak = classes.filter((c) => c.attributes.beak === beak);
      expect(withBeak.length).toBeGreaterThanOrEqual(7);
      expect(withBeak.length).toBeLessThanOrEqual(9);
      for (const eyeRing of EYE_RINGS) expect(withBeak.filter((c) => c.attributes.eyeRing === eyeRing).length, `${beak}/${eyeRing}`).toBeGreaterThanOrEqual(2);
    }
  });

  it('covers the whole attribute table and rejects counts outside it', () => {
    const all = birdClasses(MAX_BIRD_CLASSES);
    expect(new Set(all.map((c) => JSON.stringify(c.attributes))).size).toBe(MAX_BIRD_CLASSES);
    expect(() => birdClasses(MAX_BIRD_CLASSES + 1)).toThrow(/count must be an integer in \[2, 162\]/);
    expect(() => birdClasses(1)).toThrow(/birdClasses/);
  });
});

describe('generateBird', () => {
  const classes = birdClasses(24);

  it('is a pure function of (seed, class, index)', () => {
    const a = generateBird(5, classes[3]!, 7, 64);
    const b = generateBird(5, classes[3]!, 7, 64);
    expect(Buffer.from(a.rgb).equals(Buffer.from(b.rgb))).toBe(true);
    expect(a.parts).toEqual(b.parts);
    for (const [seed, cls, index] of [[6, 3, 7], [5, 4, 7], [5, 3, 8]] as const) {
      const c = generateBird(seed, classes[cls]!, index, 64);
      expect(Buffer.from(a.rgb).equals(Buffer.from(c.rgb))).toBe(false);
    }
    expect(new Set([imageSeed(0, 0, 1), imageSeed(0, 1, 0), imageSeed(1, 0, 0), imageSeed(0, 0, 0)]).size).toBe(4);
  });

  it('gives non-constant 8-bit images with the bird inside the frame', () => {
    for (const size of [32, 48, 64]) {
      for (let k = 0; k < 24; k++) {
        const { rgb, parts } = generateBird(1, classes[k]!, k, size);
        expect(rgb).toHaveLength(size * size * 3);
        for (let c = 0; c < 3; c++) {
          let s = 0;
          let s2 = 0;
          for (let p = c; p < rgb.length; p += 3) {
            s += rgb[p]!;
            s2 += rgb[p]! * rgb[p]!;
          }
          const n = size * size;
          const std = Math.sqrt(s2 / n - (s / n) ** 2);
          expect(std, `size ${size} image ${k} channel ${c}`).toBeGreaterThan(8);
        }
        const [x0, y0, x1, y1] = parts.box;
        expect(x1 - x0).toBeGreaterThan(size * 0.4);
        expect(y1 - y0).toBeGreaterThan(size * 0.25);
        for (const key of ['beakTip', 'eye', 'wingBar', 'tailTip', 'crown'] as const) {
          const [x, y] = parts[key];
          expect(x >= 0 && x < size && y >= 0 && y < size, `${key} at ${x},${y} in ${size}px`).toBe(true);
        }
      }
    }
  });

  it('changes only the pixels around a part when one attribute changes', () => {
    const base: BirdAttributes = { beak: 'short', eyeRing: 'red', wingBar: 'none', tail: 'plain', crest: false };
    // Each change, and the bird-frame point and radius (bird units) its pixels must stay within;
    // the tail's point is 3/4 of the way from its root to its (per-image) tip.
    const tail = 'tail' as const;
    const changes: { change: Partial<BirdAttributes>; at: [number, number] | typeof tail; radius: number }[] = [
      { change: { beak: 'long' }, at: [0.75, -0.28], radius: 0.3 },
      { change: { beak: 'curved' }, at: [0.72, -0.2], radius: 0.3 },
      { change: { eyeRing: 'white' }, at: [0.47, -0.33], radius: 0.15 },
      { change: { eyeRing: 'yellow' }, at: [0.47, -0.33], radius: 0.15 },
      { change: { wingBar: 'white' }, at: [-0.07, -0.03], radius: 0.17 },
      { change: { wingBar: 'yellow' }, at: [-0.07, -0.03], radius: 0.17 },
      { change: { tail: 'banded' }, at: tail, radius: 0.35 },
      { change: { tail: 'forked' }, at: tail, radius: 0.35 },
      { change: { crest: true }, at: [0.25, -0.58], radius: 0.3 },
    ];
    const size = 64;
    for (let k = 0; k < 12; k++) {
      const scene = sampleScene(new Rng(100 + k), size);
      const { rgb: ref, parts } = renderBird(base, scene);
      const [rx, ry] = birdToPixel(scene, -0.3, 0.08);
      for (const { change, at, radius } of changes) {
        const alt = renderBird({ ...base, ...change }, scene).rgb;
        const [ax, ay] = at === tail ? [rx + 0.75 * (parts.tailTip[0] - rx), ry + 0.75 * (parts.tailTip[1] - ry)] : birdToPixel(scene, at[0], at[1]);
        const r = radius * scene.scale + 1.5;
        let changed = 0;
        let total = 0;
        let far = 0;
        for (let y = 0; y < size; y++) {
          for (let x = 0; x < size; x++) {
            const i = (y * size + x) * 3;
            const d = Math.max(Math.abs(ref[i]! - alt[i]!), Math.abs(ref[i + 1]! - alt[i + 1]!), Math.abs(ref[i + 2]! - alt[i + 2]!));
            if (d === 0) continue;
            changed++;
            total += d;
            if (Math.hypot(x + 0.5 - ax, y + 0.5 - ay) > r) far++;
          }
        }
        const what = `scene ${k} ${JSON.stringify(change)}`;
        expect(far, `${what}: pixels changed away from the part`).toBe(0);
        // Visible at 64 px: the change adds up to several full-contrast pixels, not just an
        // antialiased fringe (a part can still be faint where the background matches it).
        expect(total, `${what}: summed change over ${changed} pixels`).toBeGreaterThanOrEqual(300);
      }
    }
  });
});
