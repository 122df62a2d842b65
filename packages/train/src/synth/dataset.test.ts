import { Rng } from '@mpfgvc/kernels';
import { describe, expect, it } from 'vitest';
import { type BirdAttributes, type BirdScene, birdToPixel, imageSeed, sampleScene } from './birds.js';
import { type SynthBirds, type SynthSplit, makeSynthBirds, rgbToChw } from './dataset.js';

const CLIP_NORM = { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] } as const;

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

describe('makeSynthBirds', () => {
  it('gives balanced train and test splits of 24 classes by default', () => {
    const d = makeSynthBirds();
    expect(d.superCategory).toBe('bird');
    expect(d.classes).toHaveLength(24);
    expect(d.classes).toEqual(d.classInfo.map((c) => c.name));
    expect(d.size).toBe(64);
    for (const [split, per] of [[d.train, 30], [d.test, 10]] as const) {
      expect(split.count).toBe(24 * per);
      expect(split.rgb).toHaveLength(split.count * 64 * 64 * 3);
      expect(split.parts).toHaveLength(split.count);
      const counts = new Array(24).fill(0);
      for (const l of split.labels) counts[l]++;
      expect(counts).toEqual(new Array(24).fill(per));
      expect([...split.labels]).toEqual([...split.labels].sort((a, b) => a - b));
    }
    expect(d.test.indices[0]).toBe(30);
    expect(d.train.chw).toBeUndefined();
  });

  it('is deterministic in its seed, and test counts never change train images', () => {
    const opts = { seed: 11, numClasses: 20, trainPerClass: 3, testPerClass: 2, size: 32 };
    const a = makeSynthBirds(opts);
    const b = makeSynthBirds(opts);
    expect(same(a.train.rgb, b.train.rgb) && same(a.test.rgb, b.test.rgb)).toBe(true);
    expect(same(a.train.rgb, makeSynthBirds({ ...opts, testPerClass: 5 }).train.rgb)).toBe(true);
    expect(same(a.train.rgb, makeSynthBirds({ ...opts, seed: 12 }).train.rgb)).toBe(false);
    // No image repeats within or across the splits.
    const px = 32 * 32 * 3;
    const seen = new Set<string>();
    for (const s of [a.train, a.test]) for (let n = 0; n < s.count; n++) seen.add(Buffer.from(s.rgb.subarray(n * px, (n + 1) * px)).toString('base64'));
    expect(seen.size).toBe(a.train.count + a.test.count);
  });

  it('normalises to CHW floats with the given mean and std', () => {
    const d = makeSynthBirds({ numClasses: 2, trainPerClass: 2, testPerClass: 1, size: 17, normalize: CLIP_NORM });
    const { rgb, chw } = d.train;
    expect(chw).toHaveLength(rgb.length);
    const plane = 17 * 17;
    for (const [n, c, y, x] of [[0, 0, 0, 0], [1, 1, 5, 16], [3, 2, 16, 3]] as const) {
      const want = (rgb[n * plane * 3 + (y * 17 + x) * 3 + c]! / 255 - CLIP_NORM.mean[c]) / CLIP_NORM.std[c];
      expect(chw![n * plane * 3 + c * plane + y * 17 + x]).toBeCloseTo(want, 5);
    }
    expect(() => rgbToChw(new Uint8Array(10), 17, CLIP_NORM)).toThrow(/rgbToChw/);
    expect(() => makeSynthBirds({ size: 8 })).toThrow(/size must be an integer in \[16, 512\]/);
    expect(() => makeSynthBirds({ numClasses: 500 })).toThrow(/birdClasses/);
  });
});

// Visibility of the parts: features read at fixed points of the bird's own frame (the pose is
// known from the scene) separate the part attributes, while raw whole-image pixels barely
// separate the classes. That is the fine-grained setting: the answer is in a few small regions.
describe('part visibility', () => {
  const seed = 3;
  const d = makeSynthBirds({ seed, trainPerClass: 16, testPerClass: 8, size: 64 });
  const scenes = (s: SynthSplit) => Array.from(s.labels, (l, n) => sampleScene(new Rng(imageSeed(seed, l, s.indices[n]!)), d.size));
  const trainScenes = scenes(d.train);
  const testScenes = scenes(d.test);

  /** RGB at a grid of bird-frame points over [x0, x1]×[y0, y1], minus the crop's mean colour. */
  function crop(data: SynthBirds, s: SynthSplit, scene: BirdScene, n: number, x0: number, y0: number, x1: number, y1: number): number[] {
    const size = data.size;
    const g = 9;
    const f: number[] = [];
    for (let j = 0; j < g; j++) {
      for (let i = 0; i < g; i++) {
        const [px, py] = birdToPixel(scene, x0 + ((x1 - x0) * i) / (g - 1), y0 + ((y1 - y0) * j) / (g - 1));
        const x = Math.min(size - 1, Math.max(0, Math.floor(px)));
        const y = Math.min(size - 1, Math.max(0, Math.floor(py)));
        const o = n * size * size * 3 + (y * size + x) * 3;
        f.push(s.rgb[o]!, s.rgb[o + 1]!, s.rgb[o + 2]!);
      }
    }
    for (let c = 0; c < 3; c++) {
      let m = 0;
      for (let k = c; k < f.length; k += 3) m += f[k]!;
      m /= f.length / 3;
      for (let k = c; k < f.length; k += 3) f[k]! -= m;
    }
    return f;
  }

  /**
   * How far each grid point is from the crop's mean colour. Beak, crest and tail are drawn dark
   * or light, whichever stands out from the background, so their outline shows in the contrast
   * and not in the colour.
   */
  function contrast(f: number[]): number[] {
    const out: number[] = [];
    for (let k = 0; k < f.length; k += 3) out.push(Math.hypot(f[k]!, f[k + 1]!, f[k + 2]!));
    return out;
  }

  /** Nearest-class-mean accuracy on the test split. */
  function ncm(train: number[][], trainY: string[], test: number[][], testY: string[]): number {
    const means = new Map<string, { sum: number[]; n: number }>();
    train.forEach((f, k) => {
      const m = means.get(trainY[k]!) ?? { sum: new Array(f.length).fill(0), n: 0 };
      f.forEach((v, i) => (m.sum[i]! += v));
      m.n++;
      means.set(trainY[k]!, m);
    });
    let right = 0;
    test.forEach((f, k) => {
      let best = '';
      let bestD = Infinity;
      for (const [y, m] of means) {
        let dd = 0;
        f.forEach((v, i) => (dd += (v - m.sum[i]! / m.n) ** 2));
        if (dd < bestD) [best, bestD] = [y, dd];
      }
      if (best === testY[k]) right++;
    });
    return right / test.length;
  }

  // Bird-frame box of each part, and whether its classes differ in shape (read as contrast)
  // or in colour.
  const regions: Record<keyof BirdAttributes, { box: [number, number, number, number]; shape: boolean }> = {
    beak: { box: [0.5, -0.45, 1.0, 0.05], shape: true },
    eyeRing: { box: [0.37, -0.43, 0.57, -0.23], shape: false },
    wingBar: { box: [-0.2, -0.16, 0.06, 0.1], shape: false },
    tail: { box: [-0.85, -0.25, -0.35, 0.15], shape: true },
    crest: { box: [0.0, -0.75, 0.5, -0.35], shape: true },
  };
  const partFeatures = (part: keyof BirdAttributes, s: SynthSplit, scene: BirdScene, n: number) => {
    const { box, shape } = regions[part];
    const f = crop(d, s, scene, n, ...box);
    return shape ? contrast(f) : f;
  };

  it.each(Object.keys(regions) as (keyof BirdAttributes)[])('a crop at the %s separates its attribute values', (part) => {
    const feats = (s: SynthSplit, sc: BirdScene[]) => sc.map((scene, n) => partFeatures(part, s, scene, n));
    const value = (s: SynthSplit) => Array.from(s.labels, (l) => String(d.classInfo[l]!.attributes[part]));
    const acc = ncm(feats(d.train, trainScenes), value(d.train), feats(d.test, testScenes), value(d.test));
    const chance = 1 / new Set(value(d.train)).size;
    console.log(`part ${part}: nearest-mean accuracy ${acc.toFixed(3)} (chance ${chance.toFixed(3)})`);
    expect(acc).toBeGreaterThan(chance + 0.3);
  });

  it('separates the classes from aligned part crops, hardly from raw whole images', () => {
    const parts = (s: SynthSplit, sc: BirdScene[]) => sc.map((scene, n) => (Object.keys(regions) as (keyof BirdAttributes)[]).flatMap((part) => partFeatures(part, s, scene, n)));
    const whole = (s: SynthSplit) => Array.from({ length: s.count }, (_, n) => Array.from(s.rgb.subarray(n * 64 * 64 * 3, (n + 1) * 64 * 64 * 3)));
    const y = (s: SynthSplit) => Array.from(s.labels, String);
    const partAcc = ncm(parts(d.train, trainScenes), y(d.train), parts(d.test, testScenes), y(d.test));
    const wholeAcc = ncm(whole(d.train), y(d.train), whole(d.test), y(d.test));
    console.log(`24 classes, nearest class mean: aligned part crops ${partAcc.toFixed(3)}, raw whole image ${wholeAcc.toFixed(3)} (chance ${(1 / 24).toFixed(3)})`);
    expect(partAcc).toBeGreaterThan(0.5);
    expect(wholeAcc).toBeLessThan(0.25);
  });
});
