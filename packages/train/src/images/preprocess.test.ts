import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeRgb } from './decode.js';
import { CLIP_NORMALIZATION, IMAGENET_NORMALIZATION, type Rgb, normalizeInto } from './normalize.js';
import { imageConfig, prepareBatch, prepareImage } from './preprocess.js';

const temp = mkdtempSync(join(tmpdir(), 'mpfgvc-images-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** An image file from raw interleaved pixels. */
async function write(name: string, pixels: number[] | Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4, encode: (s: Sharp) => Sharp): Promise<string> {
  const p = join(temp, name);
  await encode(sharp(Buffer.from(pixels), { raw: { width, height, channels } })).toFile(p);
  return p;
}

const IDENTITY: { mean: Rgb; std: Rgb } = { mean: [0, 0, 0], std: [1, 1, 1] };

describe('decodeRgb', () => {
  it('decodes PNG exactly and JPEG closely', async () => {
    const px = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90];
    const png = await write('rgb.png', px, 3, 2, 3, (s) => s.png());
    const rgb = await decodeRgb(png);
    expect([rgb.width, rgb.height, Array.from(rgb.data)]).toEqual([3, 2, px]);
    const flat = new Uint8Array(16 * 16 * 3).map((_, i) => [200, 100, 50][i % 3]!);
    const jpg = await write('flat.jpg', flat, 16, 16, 3, (s) => s.jpeg({ quality: 95 }));
    const got = await decodeRgb(jpg);
    expect([got.width, got.height]).toEqual([16, 16]);
    expect(Math.max(...got.data.map((v, i) => Math.abs(v - flat[i]!)))).toBeLessThanOrEqual(3);
  });

  it('expands grayscale and drops alpha', async () => {
    const gray = await write('gray.png', [0, 100, 200, 255], 2, 2, 1, (s) => s.png());
    expect(Array.from((await decodeRgb(gray)).data)).toEqual([0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
    const rgba = await write('rgba.png', [10, 20, 30, 0, 40, 50, 60, 128], 2, 1, 4, (s) => s.png());
    expect(Array.from((await decodeRgb(rgba)).data)).toEqual([10, 20, 30, 40, 50, 60]);
    const grayAlpha = await write('gray-alpha.png', [90, 0, 180, 255], 2, 1, 2, (s) => s.png());
    expect(Array.from((await decodeRgb(grayAlpha)).data)).toEqual([90, 90, 90, 180, 180, 180]);
  });

  it('converts CMYK and 16-bit images to 8-bit RGB', async () => {
    const red = new Uint8Array(8 * 8 * 3).map((_, i) => [220, 30, 30][i % 3]!);
    const cmyk = await write('cmyk.jpg', red, 8, 8, 3, (s) => s.toColourspace('cmyk').jpeg({ quality: 100 }));
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const got = await decodeRgb(cmyk);
    expect(got.data.length).toBe(8 * 8 * 3);
    // Through a CMYK profile and back: close, not exact.
    expect(Math.max(...got.data.map((v, i) => Math.abs(v - red[i]!)))).toBeLessThan(40);
    const deep = await write('deep.png', [255, 128, 0], 1, 1, 3, (s) => s.toColourspace('rgb16').png());
    expect((await sharp(deep).metadata()).depth).toBe('ushort');
    expect(Array.from((await decodeRgb(deep)).data)).toEqual([255, 128, 0]);
  });

  it('applies the EXIF orientation', async () => {
    // 3x2 stored, orientation 6 (rotate 90 degrees clockwise to display): shown as 2x3, the
    // stored bottom-left pixel at the top-left.
    const px = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6].map((v) => v * 40);
    const p = await write('rotated.png', px, 3, 2, 3, (s) => s.png().withMetadata({ orientation: 6 }));
    const got = await decodeRgb(p);
    expect([got.width, got.height]).toEqual([2, 3]);
    expect(Array.from(got.data.filter((_, i) => i % 3 === 0))).toEqual([4, 1, 5, 2, 6, 3].map((v) => v * 40));
  });
});

describe('normalizeInto', () => {
  it('writes CHW with (p / 255 - mean) / std, mirrored when flipped', () => {
    // 2x2 image: (x, y) = (0,0) (255, 0, 128); (1,0) (0, 255, 64); (0,1) (10, 20, 30); (1,1) (40, 50, 60).
    const px = new Uint8Array([255, 0, 128, 0, 255, 64, 10, 20, 30, 40, 50, 60]);
    const { mean, std } = IMAGENET_NORMALIZATION;
    const want = (flip: boolean) => {
      const out: number[] = [];
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) out.push((px[(y * 2 + (flip ? 1 - x : x)) * 3 + c]! / 255 - mean[c]!) / std[c]!);
      }
      return out;
    };
    for (const flip of [false, true]) {
      const out = new Float32Array(1 + 12).fill(NaN);
      normalizeInto(px, 2, flip, mean, std, out, 1);
      expect(Number.isNaN(out[0])).toBe(true);
      Array.from(out.subarray(1)).forEach((v, i) => expect(v).toBeCloseTo(want(flip)[i]!, 6));
    }
    // Spot values: red 255 -> (1 - 0.485) / 0.229 = 2.24890..., green 0 -> -0.456 / 0.224.
    const out = new Float32Array(12);
    normalizeInto(px, 2, false, mean, std, out, 0);
    expect(out[0]).toBeCloseTo(2.2489083, 6);
    expect(out[4]).toBeCloseTo(-2.0357143, 6);
    normalizeInto(px, 2, false, CLIP_NORMALIZATION.mean, CLIP_NORMALIZATION.std, out, 0);
    expect(out[0]).toBeCloseTo((1 - 0.48145466) / 0.26862954, 6);
  });
});

describe('prepareImage', () => {
  it('center-crops where the hand computation says', async () => {
    // 40x20: red encodes 10-pixel column stripes (0, 80, 160, 240), green 10-pixel row bands
    // (50, 200). S = 8, cropRatio 0.5: shorter side 20 -> 16, so 40 -> 32 (scale 0.8), crop at
    // left (32 - 8) / 2 = 12, top (16 - 8) / 2 = 4. Output column x is resized column 12 + x,
    // the red stripe edge (source 20) lands at resized 16 = output column 4, the green band edge
    // (source 10) at resized row 8 = output row 4; the pixels next to an edge blend.
    const px = new Uint8Array(40 * 20 * 3);
    for (let y = 0; y < 20; y++) {
      for (let x = 0; x < 40; x++) {
        px[(y * 40 + x) * 3] = [0, 80, 160, 240][Math.floor(x / 10)]!;
        px[(y * 40 + x) * 3 + 1] = y < 10 ? 50 : 200;
      }
    }
    const p = await write('stripes.png', px, 40, 20, 3, (s) => s.png());
    const cfg = imageConfig({ size: 8, train: false, cropRatio: 0.5, ...IDENTITY });
    const out = await prepareImage(p, cfg, 0, 0, 0);
    const at = (c: number, y: number, x: number) => Math.round(out[c * 64 + y * 8 + x]! * 255);
    for (let y = 0; y < 8; y++) {
      for (const x of [0, 1, 2]) expect(at(0, y, x)).toBe(80);
      for (const x of [5, 6, 7]) expect(at(0, y, x)).toBe(160);
      expect(at(0, y, 3)).toBeGreaterThan(80);
      expect(at(0, y, 4)).toBeLessThan(160);
    }
    for (let x = 0; x < 8; x++) {
      for (const y of [0, 1, 2]) expect(at(1, y, x)).toBe(50);
      for (const y of [5, 6, 7]) expect(at(1, y, x)).toBe(200);
    }
  });

  it('draws the same training crop and flip for the same (seed, epoch, index)', async () => {
    const px = new Uint8Array(50 * 30 * 3).map((_, i) => (i * 37) % 251);
    const p = await write('noise.png', px, 50, 30, 3, (s) => s.png());
    const cfg = imageConfig({ size: 12, train: true });
    const a = await prepareImage(p, cfg, 5, 1, 9);
    expect(await prepareImage(p, cfg, 5, 1, 9)).toEqual(a);
    expect(await prepareImage(p, cfg, 5, 2, 9)).not.toEqual(a);
    // Flip always vs never, with the whole image as the crop: mirror images of each other.
    const whole = { scale: [1, 1] as [number, number], ratio: [50 / 30, 50 / 30] as [number, number] };
    const flipped = await prepareImage(p, imageConfig({ size: 12, train: true, flipProbability: 1, ...whole }), 5, 1, 9);
    const straight = await prepareImage(p, imageConfig({ size: 12, train: true, flipProbability: 0, ...whole }), 5, 1, 9);
    for (let c = 0; c < 3; c++) for (let y = 0; y < 12; y++) for (let x = 0; x < 12; x++) expect(flipped[c * 144 + y * 12 + x]).toBe(straight[c * 144 + y * 12 + 11 - x]);
  });
});

describe('prepareBatch', () => {
  it('skips and names an unreadable file, or fails on it when strict', async () => {
    const good = await write('good.png', new Uint8Array(6 * 6 * 3).fill(99), 6, 6, 3, (s) => s.png());
    const other = await write('other.png', new Uint8Array(5 * 7 * 3).map((_, i) => i % 256), 5, 7, 3, (s) => s.png());
    const bad = join(temp, 'corrupt.jpg');
    writeFileSync(bad, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('not really a JPEG')]));
    const cfg = imageConfig({ size: 4, train: false });
    const task = { seed: 0, epoch: 0, indices: [0, 1, 2], paths: [good, bad, other] };
    const r = await prepareBatch(cfg, task, false);
    expect(r.kept).toEqual([0, 2]);
    expect(r.images.length).toBe(2 * 3 * 16);
    // The image after the gap moved up into its place.
    expect(r.images.subarray(0, 48)).toEqual(await prepareImage(good, cfg, 0, 0, 0));
    expect(r.images.subarray(48, 96)).toEqual(await prepareImage(other, cfg, 0, 0, 2));
    expect(r.skipped.map((s) => s.path)).toEqual([bad]);
    expect(r.skipped[0]!.reason.length).toBeGreaterThan(0);
    await expect(prepareBatch(cfg, task, true)).rejects.toThrow(`image pipeline: cannot read ${bad}:`);
  });

  it('checks its configuration', () => {
    expect(() => imageConfig({ size: 0, train: true })).toThrow(/size must be a positive integer/);
    expect(() => imageConfig({ size: 8, train: true, scale: [0.5, 0.1] })).toThrow(/scale must satisfy/);
  });
});
