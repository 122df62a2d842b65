// Training-pipeline throughput: random-resized-crop + flip + normalise to (3, S, S) float32 from
// synthetic ~500x375 JPEGs (the size of a typical CUB image), through the built loader
// (dist/images/worker.js). Build first: `npx tsc -b` in packages/train.
// Usage: node scripts/pipeline-throughput.mjs [--workers 2] [--size 448] [--images 96] [--batch 16] [--epochs 2]
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { ImageLoader, imageConfig } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '2' },
    size: { type: 'string', default: '448' },
    images: { type: 'string', default: '96' },
    batch: { type: 'string', default: '16' },
    epochs: { type: 'string', default: '2' },
  },
});
const [workers, size, count, batchSize, epochs] = ['workers', 'size', 'images', 'batch', 'epochs'].map((k) => Number(values[k]));

const dir = mkdtempSync(join(tmpdir(), 'mpfgvc-throughput-'));
try {
  // Smooth colour fields plus noise: compresses like a photograph (tens of kB at quality 90).
  const samples = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const [w, h] = [500 - (i % 3) * 20, 375 - (i % 5) * 10];
    const px = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = (y * w + x) * 3;
        const n = ((x * 7919 + y * 104729 + i * 31) % 41) - 20;
        px[o] = Math.max(0, Math.min(255, 128 + 100 * Math.sin((x + i * 13) / 40) + n));
        px[o + 1] = Math.max(0, Math.min(255, 128 + 100 * Math.cos((y + i * 7) / 30) + n));
        px[o + 2] = Math.max(0, Math.min(255, ((x + y + i) % 256) / 2 + 64 + n));
      }
    }
    const path = join(dir, `${i}.jpg`);
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(path);
    bytes += statSync(path).size;
    samples.push({ path, label: i % 10 });
  }
  const loader = new ImageLoader({ samples, image: imageConfig({ size, train: true }), batchSize, seed: 0, workers });
  let images = 0;
  let t0 = 0;
  for await (const b of loader.batches({ epoch: 0, index: 0 }, epochs)) {
    // The first batch pays for starting the workers; time from its arrival.
    if (t0 === 0) t0 = performance.now();
    else images += b.size;
  }
  const seconds = (performance.now() - t0) / 1000;
  await loader.close();
  console.log(
    `${images} training crops ${size}x${size} from ${count} JPEGs (~500x375, mean ${(bytes / count / 1024).toFixed(0)} kB), ` +
      `${workers} workers, batch ${batchSize}: ${(images / seconds).toFixed(1)} images/s`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
