// The page in a real browser: the system Chromium, headless, with WebGPU on its own adapter
// (SwiftShader where there is no GPU). A browser without an adapter fails these tests; they never
// skip. Screenshots go to apps/web/out/ for a person to look at.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Device, Rng, keep, noGrad, requestDevice, scope, tensor } from '@mpfgvc/kernels';
import { DEMO_MODEL, MPFGVC, type MPFGVCConfig } from '@mpfgvc/model';
import { IMAGENET_NORMALIZATION, makeSynthBirds, softmaxRow } from '@mpfgvc/train/browser';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { PageApi } from './app.js';
import { type PageSession, WEB_ROOT, openPage } from './harness.js';

const OUT = join(WEB_ROOT, 'out');
const CLASSES = 6;
const S = DEMO_MODEL.vision.imageSize;

let session: PageSession;
let dev: Device;
let dir: string;
let modelBytes: Uint8Array;
let birds: ReturnType<typeof makeSynthBirds>;
/** Node's outputs per image and head, from the same model file. */
const nodeProbs: Record<string, number[]>[] = [];

const api = <T>(fn: (api: PageApi, arg: any) => Promise<T>, arg?: unknown): Promise<T> =>
  session.page.evaluate(([src, a]) => new Function('api', 'arg', `return (${src})(api, arg)`)((window as unknown as { mpfgvc: PageApi }).mpfgvc, a), [fn.toString(), arg] as const) as Promise<T>;

beforeAll(async () => {
  await mkdir(OUT, { recursive: true });
  dir = await mkdtemp(join(tmpdir(), 'mpfgvc-web-'));
  birds = makeSynthBirds({ numClasses: CLASSES, trainPerClass: 1, testPerClass: 1, size: S, seed: 3, normalize: IMAGENET_NORMALIZATION });
  dev = await requestDevice();
  const config: MPFGVCConfig = { ...DEMO_MODEL, numClasses: CLASSES, superCategory: 'bird' };
  const model = new MPFGVC(dev, new Rng(11), config, { classIds: [0], sot: 1, eot: 2 });
  model.info = { classes: birds.classes, normalization: IMAGENET_NORMALIZATION, cropRatio: 0.875, dataset: 'browser test fixture' };
  modelBytes = await model.save();
  await writeFile(join(dir, 'model.safetensors'), modelBytes);
  const text = keep(noGrad(() => model.textFeatures()));
  for (let i = 0; i < 3; i++) {
    const chw = birds.test.chw!.subarray(i * 3 * S * S, (i + 1) * 3 * S * S);
    const out = scope(() => model.predict(tensor(dev, chw, [1, 3, S, S]), text));
    const row: Record<string, number[]> = {};
    // Probabilities, as the page's classifier gives them: softmax of the logits; the ensemble is one already.
    for (const h of model.heads) row[h] = h === 'ensemble' ? Array.from(await out[h]!.read()) : softmaxRow(await out[h]!.read());
    for (const t of [out.vision, out.text, out.vlfm, out.ensemble, out.selected]) t?.dispose();
    nodeProbs.push(row);
  }
  text.dispose();
  model.dispose();
  // A bird as a PNG, larger than the input so that the page resizes and crops it.
  const big = makeSynthBirds({ numClasses: CLASSES, trainPerClass: 1, testPerClass: 1, size: 96, seed: 3 });
  await sharp(Buffer.from(big.test.rgb.subarray(0, 96 * 96 * 3)), { raw: { width: 96, height: 96, channels: 3 } })
    .png()
    .toFile(join(dir, 'bird.png'));
  await writeFile(join(dir, 'notes.safetensors'), 'these are notes, not tensors\n');
  session = await openPage();
});

afterAll(async () => {
  await session?.close();
  dev?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the web app in Chromium', () => {
  test('finds a WebGPU adapter and passes the kernels self-check', async () => {
    const adapter = await session.page.textContent('#adapter');
    expect(adapter).toMatch(/^adapter: /);
    const checks = await api((a) => a.selfCheck());
    expect(checks.length).toBeGreaterThan(0);
    for (const c of checks) expect(c.ok, `${c.name}: ${c.maxAbsError} > ${c.tolerance}`).toBe(true);
  });

  test("a model file's probabilities in the browser equal Node's within 1e-4 relative", async () => {
    const b64 = Buffer.from(modelBytes).toString('base64');
    const shown = await api((a, arg) => a.loadModel(arg.b64, 'fixture.safetensors'), { b64 });
    expect(shown.classes).toEqual(birds.classes);
    expect(shown.imageSize).toBe(S);
    for (let i = 0; i < nodeProbs.length; i++) {
      const chw = Array.from(birds.test.chw!.subarray(i * 3 * S * S, (i + 1) * 3 * S * S));
      const page = await api((a, arg) => a.probs(arg), chw);
      for (const [head, want] of Object.entries(nodeProbs[i]!)) {
        const got = page[head]!;
        expect(got.length, head).toBe(want.length);
        const scale = Math.max(...want.map(Math.abs));
        const err = Math.max(...got.map((g, k) => Math.abs(g - want[k]!)));
        expect(err / scale, `image ${i}, ${head}: max |browser - node| ${err} of ${scale}`).toBeLessThanOrEqual(1e-4);
      }
    }
  });

  test('loads a model and classifies an image through the pickers, drawing the explanation', async () => {
    const { page } = session;
    await page.setInputFiles('#model-file', join(dir, 'model.safetensors'));
    await page.waitForFunction(() => document.querySelector('#model-info')?.textContent?.includes('model.safetensors'));
    expect(await page.textContent('#model-info')).toContain(birds.classes[0]);
    await page.setInputFiles('#image-file', join(dir, 'bird.png'));
    await page.waitForFunction(() => document.querySelectorAll('#results .head').length === 4, undefined, { timeout: 60_000 });
    const heads = await page.$$eval('#results .head h3', (hs) => hs.map((h) => h.textContent));
    expect(heads).toEqual(['Vision (CLS)', 'Text (DaTP)', 'VLFM', 'Ensemble']);
    expect(await page.$$eval('#results .head:first-child li', (li) => li.length)).toBe(5);
    expect(await page.textContent('#timing')).toMatch(/forward [\d.]+ ms on .+; SsVP kept 12 of 64 patches/);
    // The explanation: 12 patches outlined in yellow on the right panel.
    const yellow = await page.$eval('#explain', (c) => {
      const d = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, (c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i]! > 230 && d[i + 1]! > 200 && d[i + 2]! < 40) n++;
      return n;
    });
    expect(yellow).toBeGreaterThan(12 * 4 * 20);
    expect(await page.isHidden('#error')).toBe(true);
    await page.screenshot({ path: join(OUT, 'classify.png'), fullPage: true });
  });

  test('a file that is not a model gets a message naming it, and the loaded model stays', async () => {
    const { page } = session;
    await page.setInputFiles('#model-file', join(dir, 'notes.safetensors'));
    await page.waitForSelector('#error:not([hidden])');
    const message = await page.textContent('#error');
    expect(message).toContain('notes.safetensors');
    expect(message).toMatch(/expected a model\.safetensors/);
    expect(await page.textContent('#model-info')).toContain('model.safetensors');
  });

  test('a short training run in the tab lowers the loss and ends in a model it classifies with', async () => {
    const { page } = session;
    const r = await api((a) => a.train({ numClasses: 4, perClass: 16, testPerClass: 4, epochs: [3, 1], batch: 16 }));
    const stage1 = r.history.filter((h) => h.stage === 1).map((h) => h.loss);
    expect(stage1.length).toBe(12);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean(stage1.slice(-3)), `stage-1 losses ${stage1.map((l) => l.toFixed(3)).join(' ')}`).toBeLessThan(mean(stage1.slice(0, 3)));
    expect(r.stages.map((s) => s.stage)).toEqual([1, 2]);
    for (const v of Object.values(r.stages[1]!.top1)) expect(v).toBeGreaterThanOrEqual(0);
    expect(await page.isVisible('#train-download')).toBe(true);
    expect(await page.textContent('#model-info')).toContain('trained in this tab');
    // The trained model answers the classify panel.
    const rgb = Array.from(birds.test.rgb.subarray(0, S * S * 3));
    const c = await api((a, arg) => a.classifyRgb(arg), rgb);
    expect(c.heads.map((h) => h.head)).toEqual(['vision', 'text', 'vlfm', 'ensemble']);
    await page.screenshot({ path: join(OUT, 'train.png'), fullPage: true });
  });

  test('training can be cancelled and the page stays usable', async () => {
    const { page } = session;
    const run = api((a) => a.train({ numClasses: 4, perClass: 16, testPerClass: 4, epochs: [50, 1], batch: 16 }).then(() => 'finished', (e: Error) => e.name));
    await page.waitForFunction(() => /step [1-9]/.test(document.querySelector('#train-status')?.textContent ?? ''), undefined, { timeout: 60_000 });
    await page.click('#train-cancel');
    expect(await run).toBe('AbortError');
    expect(await page.textContent('#train-status')).toMatch(/cancelled after \d+ steps/);
    expect(await page.isEnabled('#train-start')).toBe(true);
  });
});
