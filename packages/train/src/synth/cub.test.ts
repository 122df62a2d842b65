import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it, vi } from 'vitest';
import { readCub } from '../datasets/cub.js';
import { birdClasses, generateBird } from './birds.js';
import { cubImageName, writeCubLayout } from './cub.js';
import { makeSynthBirds } from './dataset.js';

// Lets a test make the n-th file write fail, as a crash or a full disk would.
const failing = vi.hoisted(() => ({ after: Infinity, writes: 0 }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...fs,
    writeFile: (...args: Parameters<typeof fs.writeFile>) => {
      if (++failing.writes > failing.after) return Promise.reject(new Error('ENOSPC: simulated full disk'));
      return fs.writeFile(...args);
    },
  };
});

function rows(dir: string, file: string): string[][] {
  return readFileSync(join(dir, file), 'utf8').trimEnd().split('\n').map((l) => l.split(' '));
}

describe('writeCubLayout', () => {
  const opts = { seed: 4, numClasses: 3, trainPerClass: 4, testPerClass: 2, size: 32 };

  it('writes the CUB-200-2011 files with 1-based ids and PNGs equal to the generator', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'synth-cub-')), 'CUB_200_2011');
    const summary = await writeCubLayout(dir, opts);
    expect(summary).toEqual({ dir, images: 18, train: 12, test: 6, classes: 3 });
    expect(readdirSync(join(dir, '..'))).toEqual(['CUB_200_2011']);
    const classes = birdClasses(3);
    expect(rows(dir, 'classes.txt')).toEqual(classes.map((c, i) => [String(i + 1), c.dirName]));
    const images = rows(dir, 'images.txt');
    const labels = rows(dir, 'image_class_labels.txt');
    const split = rows(dir, 'train_test_split.txt');
    const boxes = rows(dir, 'bounding_boxes.txt');
    expect(images.map((r) => r[0])).toEqual(Array.from({ length: 18 }, (_, i) => String(i + 1)));
    for (const [file, table] of [['labels', labels], ['split', split], ['boxes', boxes]] as const) expect(table.map((r) => r[0]), file).toEqual(images.map((r) => r[0]));
    expect(split.filter((r) => r[1] === '1')).toHaveLength(12);
    expect(rows(dir, 'parts/parts.txt').map((r) => r[0])).toEqual(['1', '2', '3', '4', '5']);
    expect(rows(dir, 'parts/part_locs.txt')).toHaveLength(18 * 5);

    const d = makeSynthBirds(opts);
    for (let k = 0; k < 18; k++) {
      const cls = classes[Number(labels[k]![1]) - 1]!;
      const index = k % 6;
      expect(images[k]![1]).toBe(cubImageName(cls, index));
      expect(images[k]![1]!.startsWith(`${cls.dirName}/`)).toBe(true);
      expect(split[k]![1]).toBe(index < 4 ? '1' : '0');
      const { data, info } = await sharp(join(dir, 'images', images[k]![1]!)).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height, info.channels]).toEqual([32, 32, 3]);
      expect(Buffer.compare(data, Buffer.from(generateBird(4, cls, index, 32).rgb))).toBe(0);
      // The in-memory dataset holds the same pixels as the files.
      const s = index < 4 ? d.train : d.test;
      const n = cls.index * (index < 4 ? 4 : 2) + (index < 4 ? index : index - 4);
      expect(Buffer.compare(data, Buffer.from(s.rgb.subarray(n * 32 * 32 * 3, (n + 1) * 32 * 32 * 3)))).toBe(0);
      const [x, y, w, h] = boxes[k]!.slice(1).map(Number);
      expect(x! >= 0 && y! >= 0 && w! > 8 && h! > 8 && x! + w! <= 32.05 && y! + h! <= 32.05).toBe(true);
    }
    // The product's CUB reader sees the generator's class names, labels and split.
    const read = readCub(dir);
    expect(read.classes).toEqual(classes.map((c) => c.name));
    expect(read.superCategory).toBe('bird');
    expect(read.train.map((x) => x.label)).toEqual(Array.from(d.train.labels));
    expect(read.test.map((x) => x.label)).toEqual(Array.from(d.test.labels));
    const meta = JSON.parse(readFileSync(join(dir, 'synth.json'), 'utf8'));
    expect(meta.superCategory).toBe('bird');
    expect(meta.classes[0].description).toBe(classes[0]!.description);
  });

  it('refuses to touch an existing folder unless told to, then replaces it whole', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'synth-cub-')), 'data');
    await writeCubLayout(dir, opts);
    await expect(writeCubLayout(dir, { ...opts, seed: 5 })).rejects.toThrow(/already exists/);
    await writeCubLayout(dir, { ...opts, numClasses: 2, overwrite: true });
    expect(rows(dir, 'classes.txt')).toHaveLength(2);
    expect(readdirSync(join(dir, 'images'))).toHaveLength(2);
    expect(readdirSync(join(dir, '..'))).toEqual(['data']);
  });

  it('leaves no folder that looks complete when a write fails half-way', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'synth-cub-')), 'data');
    failing.writes = 0;
    failing.after = 9;
    try {
      await expect(writeCubLayout(dir, opts)).rejects.toThrow(/simulated full disk/);
    } finally {
      failing.after = Infinity;
    }
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(join(dir, '..'))).toEqual([]);
    // An earlier complete dataset survives a failed overwrite untouched.
    await writeCubLayout(dir, opts);
    const before = readFileSync(join(dir, 'images.txt'), 'utf8');
    failing.writes = 0;
    failing.after = 15;
    try {
      await expect(writeCubLayout(dir, { ...opts, numClasses: 2, overwrite: true })).rejects.toThrow(/simulated full disk/);
    } finally {
      failing.after = Infinity;
    }
    expect(readFileSync(join(dir, 'images.txt'), 'utf8')).toBe(before);
    expect(readdirSync(join(dir, '..'))).toEqual(['data']);
  });
});
