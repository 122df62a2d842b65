import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sample } from '../datasets/dataset.js';
import { type Batch, ImageLoader, type LoaderOptions } from './loader.js';
import { imageConfig, prepareImage } from './preprocess.js';

// Node's workers load JavaScript, and vitest runs this package from TypeScript source, where the
// loader's default worker (./worker.js beside loader.ts) does not exist. Rather than depend on a
// possibly stale dist/ build, the test bundles the current worker.ts with esbuild into
// node_modules/.cache (packages stay external, so sharp and @mpfgvc/kernels resolve as usual; one
// file per test process, so parallel runs do not overwrite each other's) and passes it as
// workerUrl. Built code uses the default: dist/images/worker.js.
let workerUrl: URL;
let outfile: string;
const temp = mkdtempSync(join(tmpdir(), 'mpfgvc-loader-'));
const samples: Sample[] = [];
let corrupt: string;

beforeAll(async () => {
  outfile = join(import.meta.dirname, `../../node_modules/.cache/mpfgvc-image-worker/worker-${process.pid}.mjs`);
  await build({ entryPoints: [join(import.meta.dirname, 'worker.ts')], outfile, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'error' });
  workerUrl = pathToFileURL(outfile);
  // 11 JPEGs of varied sizes and content, 3 classes.
  mkdirSync(join(temp, 'img'));
  for (let i = 0; i < 11; i++) {
    const [w, h] = [40 + 3 * i, 30 + (i % 4) * 5];
    const px = Buffer.alloc(w * h * 3);
    for (let k = 0; k < px.length; k++) px[k] = (k * (i + 3) + i * 17) % 256;
    const path = join(temp, 'img', `${i}.jpg`);
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path);
    samples.push({ path, label: i % 3 });
  }
  // A JPEG cut off halfway, as an interrupted download leaves it.
  corrupt = join(temp, 'img', 'corrupt.jpg');
  const whole = readFileSync(samples[10]!.path);
  writeFileSync(corrupt, whole.subarray(0, whole.length >> 1));
});
afterAll(() => {
  rmSync(temp, { recursive: true, force: true });
  rmSync(outfile, { force: true });
});

const SIZE = 16;
const train = imageConfig({ size: SIZE, train: true });

async function collect(opts: Partial<LoaderOptions>, run: (l: ImageLoader) => AsyncGenerator<Batch>): Promise<{ batches: Batch[]; loader: ImageLoader }> {
  const loader = new ImageLoader({ samples, image: train, batchSize: 4, seed: 3, workerUrl, ...opts });
  const batches: Batch[] = [];
  try {
    for await (const b of run(loader)) batches.push(b);
  } finally {
    await loader.close();
  }
  return { batches, loader };
}

describe('ImageLoader', () => {
  it('gives the same batches for any worker count and prefetch depth', async () => {
    const runs = await Promise.all(
      [
        { workers: 0, prefetch: 1 },
        { workers: 1, prefetch: 1 },
        { workers: 3, prefetch: 5 },
      ].map((o) => collect(o, (l) => l.batches({ epoch: 0, index: 0 }, 2))),
    );
    const [ref, ...rest] = runs.map((r) => r.batches);
    expect(ref!.map((b) => b.size)).toEqual([4, 4, 3, 4, 4, 3]);
    for (const other of rest) expect(other).toEqual(ref);
    // Each image is what preparing that sample alone gives: its crop does not depend on the
    // batch it landed in, nor on when it was prepared.
    for (const b of ref!) {
      for (let j = 0; j < b.size; j++) {
        const alone = await prepareImage(samples[b.indices[j]!]!.path, train, 3, b.position.epoch, b.indices[j]!);
        expect(b.images.subarray(j * alone.length, (j + 1) * alone.length)).toEqual(alone);
        expect(b.labels[j]).toBe(samples[b.indices[j]!]!.label);
      }
    }
    // Epochs see different orders, and every sample once.
    expect(Array.from(ref![0]!.indices)).not.toEqual(Array.from(ref![3]!.indices));
    expect(ref!.slice(0, 3).flatMap((b) => Array.from(b.indices)).sort((a, b) => a - b)).toEqual([...Array(11).keys()]);
  });

  it('resumes from a saved position with the same batches', async () => {
    const { batches: full } = await collect({ workers: 2 }, (l) => l.batches({ epoch: 0, index: 0 }, 3));
    const saved = full[4]!.next;
    const { batches: resumed } = await collect({ workers: 2 }, (l) => l.batches(saved, 3));
    expect(resumed).toEqual(full.slice(5));
  });

  it('skips a corrupt file and names it', async () => {
    const withBad = [...samples.slice(0, 2), { path: corrupt, label: 2 }, ...samples.slice(2, 5)];
    for (const workers of [0, 2]) {
      const { batches, loader } = await collect({ samples: withBad, workers, shuffle: false, batchSize: 6 }, (l) => l.epoch(0));
      expect(batches.map((b) => [b.size, b.skipped])).toEqual([[5, [corrupt]]]);
      expect(batches[0]!.images.length).toBe(5 * 3 * SIZE * SIZE);
      expect(Array.from(batches[0]!.indices)).toEqual([0, 1, 3, 4, 5]);
      expect(Array.from(batches[0]!.labels)).toEqual([0, 1, 2, 0, 1]);
      expect([...loader.skipped.keys()]).toEqual([corrupt]);
      expect(loader.skipCount).toBe(1);
    }
  });

  it('fails naming the file when strict', async () => {
    const withBad = [...samples.slice(0, 5), { path: corrupt, label: 2 }];
    for (const workers of [0, 2]) {
      await expect(collect({ samples: withBad, workers, shuffle: false, batchSize: 2, strict: true }, (l) => l.epoch(0))).rejects.toThrow(
        `image pipeline: cannot read ${corrupt}:`,
      );
    }
  });

  it('skips a named pipe without waiting on it, and stops at a file outside its folder (symlinks followed)', async () => {
    const fifo = join(temp, 'img', 'pipe.jpg');
    execFileSync('mkfifo', [fifo]);
    const outside = join(temp, 'outside.jpg');
    writeFileSync(outside, readFileSync(samples[0]!.path));
    const link = join(temp, 'img', 'link.jpg');
    symlinkSync(outside, link);
    try {
      for (const workers of [0, 2]) {
        const started = performance.now();
        const { batches } = await collect({ samples: [samples[0]!, { path: fifo, label: 1 }], workers, shuffle: false, batchSize: 2, root: join(temp, 'img') }, (l) => l.epoch(0));
        expect(batches.map((b) => [b.size, b.skipped])).toEqual([[1, [fifo]]]);
        expect(performance.now() - started).toBeLessThan(10_000);
        const escape = collect({ samples: [samples[0]!, { path: link, label: 1 }], workers, shuffle: false, batchSize: 2, root: join(temp, 'img') }, (l) => l.epoch(0));
        await expect(escape).rejects.toThrow(`image ${link} resolves to ${outside}, outside ${join(temp, 'img')} (symlinks are followed)`);
        await expect(escape).rejects.toMatchObject({ name: 'UnsafePathError' });
      }
      // Without a root (files named by the caller, not by a data file) the same link is read.
      const { batches } = await collect({ samples: [{ path: link, label: 1 }], workers: 0, shuffle: false, batchSize: 1 }, (l) => l.epoch(0));
      expect(batches[0]!.size).toBe(1);
    } finally {
      rmSync(fifo);
      rmSync(link);
    }
  });

  it('lets a consumer stop early and start again', async () => {
    const loader = new ImageLoader({ samples, image: train, batchSize: 2, seed: 3, workers: 2, prefetch: 4, workerUrl });
    try {
      const first: Batch[] = [];
      for await (const b of loader.epoch(0)) {
        first.push(b);
        if (first.length === 2) break;
      }
      const again: Batch[] = [];
      for await (const b of loader.epoch(0, first[1]!.next.index)) again.push(b);
      expect(again.length).toBe(4);
      expect(again[0]!.position).toEqual(first[1]!.next);
    } finally {
      await loader.close();
    }
  });

  it('reports a missing worker entry', () => {
    expect(() => new ImageLoader({ samples, image: train, batchSize: 2, seed: 0, workers: 1, workerUrl: pathToFileURL(join(temp, 'nope.js')) })).toThrow(
      /worker entry .*nope.js not found; build @mpfgvc\/train/,
    );
  });
});
