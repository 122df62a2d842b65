// Trains the tab demo (TAB_DEMO) in headless Chromium on its own adapter, then classifies a
// held-out bird with the model it trained through the page's picker; prints images/s, per-stage
// time and held-out top-1, and writes screenshots of the training and the classify + explain views.
//
//   npm run -w @mpfgvc/web measure [-- --out <folder>]     (default apps/web/out)
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { IMAGENET_NORMALIZATION, makeSynthBirds } from '@mpfgvc/train/browser';
import sharp from 'sharp';
import type { PageApi } from './app.js';
import { TAB_DEMO } from './engine.js';
import { WEB_ROOT, openPage } from './harness.js';

const i = process.argv.indexOf('--out');
const out = i > 0 ? resolve(process.argv[i + 1] ?? '') : join(WEB_ROOT, 'out');
await mkdir(out, { recursive: true });
const scratch = await mkdtemp(join(tmpdir(), 'mpfgvc-web-measure-'));
const session = await openPage({ viewport: { width: 1200, height: 900 } });
try {
  const { page } = session;
  const adapter = await page.textContent('#adapter');
  const r = await page.evaluate((o) => (window as unknown as { mpfgvc: PageApi }).mpfgvc.train(o), TAB_DEMO);
  await page.locator('#train-panel').screenshot({ path: join(out, 'web-train.png') });
  // A bird the run never saw (another seed), larger than the input: the page resizes and crops it.
  const side = 96;
  const birds = makeSynthBirds({ numClasses: TAB_DEMO.numClasses, trainPerClass: 1, testPerClass: 1, size: side, seed: 1234, normalize: IMAGENET_NORMALIZATION });
  const k = 2;
  const png = join(scratch, `${birds.classes[k]!.replace(/\W+/g, '-')}.png`);
  await sharp(Buffer.from(birds.test.rgb.subarray(k * side * side * 3, (k + 1) * side * side * 3)), { raw: { width: side, height: side, channels: 3 } })
    .png()
    .toFile(png);
  await page.setInputFiles('#image-file', png);
  await page.waitForFunction(() => document.querySelectorAll('#results .head').length > 0);
  // The page from its top down to the end of the classify panel (the results reach below the fold).
  await page.evaluate(() => window.scrollTo(0, 0));
  const bottom = await page.$eval('#classify-panel', (el) => el.getBoundingClientRect().bottom + window.scrollY);
  await page.screenshot({ path: join(out, 'web-classify.png'), fullPage: true, clip: { x: 0, y: 0, width: 1200, height: Math.ceil(bottom + 12) } });
  const top = await page.$$eval('#results .head', (cards) =>
    cards.map((c) => `${c.querySelector('h3')?.textContent}: ${Array.from(c.querySelector('li')?.children ?? [], (e) => e.textContent).filter(Boolean).join(' ')}`),
  );
  const report = {
    adapter,
    config: TAB_DEMO,
    imagesPerSec: Number(r.imagesPerSec.toFixed(1)),
    stages: r.stages.map((s) => ({ stage: s.stage, seconds: Number(s.seconds.toFixed(1)), top1: Object.fromEntries(Object.entries(s.top1).map(([h, v]) => [h, Number((100 * v).toFixed(1))])) })),
    classified: { truth: birds.classes[k], top },
    screenshots: [join(out, 'web-train.png'), join(out, 'web-classify.png')],
  };
  console.log(JSON.stringify(report, null, 2));
} finally {
  await session.close();
  await rm(scratch, { recursive: true, force: true });
}
