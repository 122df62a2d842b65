// The commands end to end through the built bundle (build first: npx tsc -b && node build.mjs), on
// a tiny synthetic dataset, a tiny MP-FGVC checkpoint made here through the model package, and the
// model package's tiny ViT and CLIP text fixtures.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng, requestDevice } from '@mpfgvc/kernels';
import { ClipTokenizer, MPFGVC, type MPFGVCConfig, TEST_MODEL, parseSafetensors, readF32 } from '@mpfgvc/model';
import { Progress, formatDuration } from './progress.js';

const bin = fileURLToPath(new URL('../dist/mpfgvc.js', import.meta.url));
const fixtures = fileURLToPath(new URL('../../model/fixtures/', import.meta.url));

function mpfgvc(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => l).join('\n') };
}

/** A failure is one line on stderr, starting with the program's name. */
function expectOneLine(r: { code: number | null; stderr: string }, code: number, pattern: RegExp) {
  expect(r.code).toBe(code);
  expect(r.stderr.split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

let tmp: string;
const tokenizer = ClipTokenizer.fromJson(JSON.parse(readFileSync(join(fixtures, 'tokenizer-clip-tiny.json'), 'utf8')));
const CONFIG: MPFGVCConfig = {
  ...TEST_MODEL,
  vision: { ...TEST_MODEL.vision, imageSize: 32, patchSize: 8 },
  text: { ...TEST_MODEL.text, vocabSize: tokenizer.vocabSize },
  numClasses: 4,
  superCategory: 'bird',
};

let images: string[];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'mpfgvc-cli-'));
  const dev = await requestDevice();
  const model = new MPFGVC(dev, new Rng(1), CONFIG, { classIds: tokenizer.encode('bird'), sot: tokenizer.sot, eot: tokenizer.eot });
  writeFileSync(join(tmp, 'tiny.safetensors'), await model.save());
  dev.destroy();
  const r = mpfgvc('synth', '--out', 'birds', '--classes', '4', '--per-class', '2', '--test-per-class', '1', '--size', '40', '--json');
  expect(r.code, r.stderr).toBe(0);
  const lines = readFileSync(join(tmp, 'birds', 'images.txt'), 'utf8').trim().split('\n');
  images = lines.map((l) => join(tmp, 'birds', 'images', l.split(' ')[1]!));
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mpfgvc synth', () => {
  it('writes the CUB layout it reports', () => {
    const lines = readFileSync(join(tmp, 'birds', 'images.txt'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(12);
    expect(readFileSync(join(tmp, 'birds', 'classes.txt'), 'utf8').trim().split('\n')).toHaveLength(4);
    const split = readFileSync(join(tmp, 'birds', 'train_test_split.txt'), 'utf8').trim().split('\n');
    expect(split.filter((l) => l.endsWith(' 1'))).toHaveLength(8);
    expect(images.every((p) => existsSync(p))).toBe(true);
  });

  it('--config supplies flags, the command line wins, and the effective config is printed', () => {
    writeFileSync(join(tmp, 'synth.json'), JSON.stringify({ classes: 3, 'per-class': 1, 'test-per-class': 0, size: 16 }));
    const r = mpfgvc('synth', '--config', 'synth.json', '--classes', '2', '--out', 'cfg');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/classes\s+2\n/);
    expect(r.stdout).toMatch(/per-class\s+1\n/);
    expect(r.stdout).toMatch(/wrote 2 images \(2 train, 0 test, 2 classes\)/);
  });

  it('refuses to overwrite, rejects bad values and unknown config keys, each in one line', () => {
    expectOneLine(mpfgvc('synth', '--out', 'birds'), 1, /^mpfgvc: synth: .*birds already exists \(pass --overwrite to replace it\)$/);
    expectOneLine(mpfgvc('synth', '--out', 'x', '--classes', '0'), 2, /argument '0' is invalid. expected an integer in \[2, \d+\], got '0'/);
    writeFileSync(join(tmp, 'bad.json'), JSON.stringify({ classez: 3 }));
    expectOneLine(mpfgvc('synth', '--out', 'x', '--config', 'bad.json'), 2, /^mpfgvc: --config bad.json: unknown key 'classez' for 'synth'$/);
    writeFileSync(join(tmp, 'bad2.json'), JSON.stringify({ size: 8 }));
    expectOneLine(mpfgvc('synth', '--out', 'x', '--config', 'bad2.json'), 2, /^mpfgvc: --config bad2.json: 'size': expected an integer in \[16, 512\], got '8'$/);
    expectOneLine(mpfgvc('synth', '--out', 'x', '--config', 'missing.json'), 2, /^mpfgvc: --config missing.json: no such file$/);
    expect(mpfgvc('synth').code).toBe(2);
  });
});

describe('mpfgvc plot', () => {
  it('draws loss per stage and top-1 per head from metrics.jsonl, as SVG and PNG', async () => {
    const run = join(tmp, 'run-plot');
    mkdirSync(run);
    const rows: object[] = [];
    for (let s = 1; s <= 12; s++) rows.push({ stage: 1, epoch: Math.floor((s - 1) / 4), step: s, lr: 1e-3, loss: 3 / s, imagesPerSec: 10, time: s });
    for (let e = 0; e < 3; e++) rows.push({ stage: 1, epoch: e, split: 'test', top1: { vision: 0.2 * (e + 1), text: 0.15 * (e + 1), vlfm: 0.1, ensemble: 0.22 * (e + 1) }, top5: {} });
    for (let s = 13; s <= 16; s++) rows.push({ stage: 2, epoch: 0, step: s, lr: 1e-3, loss: 1 / s, imagesPerSec: 10, time: s });
    rows.push({ stage: 2, epoch: 0, split: 'test', top1: { vision: 0.6, text: 0.45, vlfm: 0.7, ensemble: 0.72 }, top5: {} });
    writeFileSync(join(run, 'metrics.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const r = mpfgvc('plot', run, '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ lossPoints: 16, evalPoints: 16 });
    const svg = readFileSync(join(run, 'curves.svg'), 'utf8');
    for (const label of ['stage 1', 'stage 2', 'vision', 'text', 'vlfm', 'ensemble', 'training loss', 'test top-1']) expect(svg).toContain(label);
    const meta = await sharp(join(run, 'curves.png')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 2240, 760]);
  });

  it('a folder without metrics, or a file of other rows, is one line', () => {
    mkdirSync(join(tmp, 'empty-run'));
    expectOneLine(mpfgvc('plot', 'empty-run'), 2, /^mpfgvc: plot: empty-run has no metrics.jsonl$/);
    writeFileSync(join(tmp, 'other.jsonl'), '{"hello": 1}\n');
    expectOneLine(mpfgvc('plot', 'other.jsonl'), 1, /^mpfgvc: other.jsonl line 1: stage: expected one of 1, 2, got nothing$/);
    writeFileSync(join(tmp, 'events.jsonl'), '{"event": "resume", "stage": 1, "step": 0, "time": 0}\n');
    expectOneLine(mpfgvc('plot', 'events.jsonl'), 1, /holds no loss or evaluation rows$/);
    writeFileSync(join(tmp, 'wrong.jsonl'), '{"stage": 1, "epoch": 0, "step": 1, "lr": 0.1, "loss": "2", "imagesPerSec": 1, "time": 1}\n');
    expectOneLine(mpfgvc('plot', 'wrong.jsonl'), 1, /^mpfgvc: wrong.jsonl line 1: loss: expected a number, got "2"$/);
    writeFileSync(join(tmp, 'broken.jsonl'), '{"stage": 1, "epoch": 0, "step": 1, "lr": 0.1, "loss": 2, "imagesPerSec": 1, "time": 1}\n{oops\n');
    expectOneLine(mpfgvc('plot', 'broken.jsonl'), 1, /broken.jsonl line 2: not JSON$/);
  });
});

describe('mpfgvc predict and explain', () => {
  it('predict --json: top-k per head with probabilities, the ensemble the mean of the heads', () => {
    const r = mpfgvc('predict', '--checkpoint', 'tiny.safetensors', '--top', '4', '--json', images[0]!, images[5]!);
    expect(r.code, r.stderr).toBe(0);
    const { results } = JSON.parse(r.stdout);
    expect(results).toHaveLength(2);
    for (const res of results) {
      const full: Record<string, number[]> = {};
      for (const h of ['vision', 'text', 'vlfm', 'ensemble']) {
        expect(res[h]).toHaveLength(4);
        const ps = res[h].map((c: { p: number }) => c.p);
        expect(ps.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 4);
        expect([...ps].sort((a, b) => b - a)).toEqual(ps);
        full[h] = [];
        for (const c of res[h]) full[h]![c.class] = c.p;
      }
      for (let c = 0; c < 4; c++) expect(full.ensemble![c]).toBeCloseTo((full.vision![c]! + full.text![c]! + full.vlfm![c]!) / 3, 5);
      expect(res.selected).toHaveLength(CONFIG.selectK);
    }
  });

  it('explain draws the selected patches over the network input, as PNG', async () => {
    const r = mpfgvc('explain', '--checkpoint', 'tiny.safetensors', '--out', 'overlay.png', '--json', images[0]!);
    expect(r.code, r.stderr).toBe(0);
    const [res] = JSON.parse(r.stdout).results;
    expect(res.selected).toHaveLength(CONFIG.selectK);
    const { data, info } = await sharp(join(tmp, 'overlay.png')).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([2 * 448 + 12, 478]);
    // On the right, a kept cell has the yellow outline on its top edge and a dropped cell is darker
    // than the same pixel of the plain copy on the left.
    const cell = 448 / 4;
    const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
    for (let id = 0; id < 16; id++) {
      const x = Math.floor((id % 4) * cell + cell / 2);
      const y = Math.floor(Math.floor(id / 4) * cell);
      const [r0, g0, b0] = px(448 + 12 + x, y + 1);
      const yellow = r0! > 200 && g0! > 200 && b0! < 80;
      expect(yellow, `cell ${id}`).toBe(res.selected.includes(id));
      const sum = (p: number[]) => p[0]! + p[1]! + p[2]!;
      const [plain, shown] = [sum(px(x, y + cell / 2)), sum(px(448 + 12 + x, y + cell / 2))];
      if (res.selected.includes(id)) expect(shown, `cell ${id}`).toBe(plain);
      else expect(shown, `cell ${id}`).toBeLessThan(plain * 0.7 + 3);
    }
  });

  it('missing files and bad checkpoints are one line with a meaningful code', () => {
    expectOneLine(mpfgvc('predict', '--checkpoint', 'nope.safetensors', images[0]!), 2, /^mpfgvc: checkpoint nope.safetensors: no such file or folder$/);
    expectOneLine(mpfgvc('predict', '--checkpoint', 'tiny.safetensors', 'nope.png'), 2, /^mpfgvc: image nope.png: no such file$/);
    expectOneLine(mpfgvc('predict', '--checkpoint', 'birds/images.txt', images[0]!), 1, /^mpfgvc: checkpoint birds\/images.txt: /);
    expectOneLine(mpfgvc('predict', '--checkpoint', 'tiny.safetensors', '--top', '0', images[0]!), 2, /'--top <k>' argument '0' is invalid/);
    expectOneLine(mpfgvc('explain', '--checkpoint', 'tiny.safetensors', '--out', 'one.png', images[0]!, images[1]!), 2, /names one file, but 2 images were given/);
  });

  it('a bad image among several is named and skipped; the others are done; the exit code says one failed', () => {
    writeFileSync(join(tmp, 'text.jpg'), 'not an image');
    const r = mpfgvc('predict', '--checkpoint', 'tiny.safetensors', '--json', images[0]!, 'text.jpg', 'gone.png', images[1]!);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toEqual([
      expect.stringMatching(/^mpfgvc: image text.jpg: cannot read it \(/),
      'mpfgvc: image gone.png: no such file',
      'mpfgvc: 2 of 4 images could not be read (named above); the others were done',
    ]);
    const out = JSON.parse(r.stdout);
    expect(out.results.map((x: { image: string }) => x.image)).toEqual([images[0], images[1]]);
    expect(out.errors.map((x: { image: string }) => x.image)).toEqual(['text.jpg', 'gone.png']);
    const e = mpfgvc('explain', '--checkpoint', 'tiny.safetensors', '--out', 'ex', images[0]!, 'text.jpg');
    expect(e.code).toBe(1);
    expect(e.stdout).toMatch(/\.ssvp\.png/);
    expect(e.stderr.split('\n')).toHaveLength(2);
    expect(existsSync(join(tmp, 'ex', `${basename(images[0]!, '.png')}.ssvp.png`))).toBe(true);
  });
});

describe('mpfgvc features', () => {
  beforeAll(() => {
    const vit = join(tmp, 'vit-hf');
    mkdirSync(vit);
    copyFileSync(join(fixtures, 'vit_hf.safetensors'), join(vit, 'model.safetensors'));
    writeFileSync(join(vit, 'config.json'), JSON.stringify({ model_type: 'vit', hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4, intermediate_size: 64, image_size: 32, patch_size: 8, layer_norm_eps: 1e-12, hidden_act: 'gelu' }));
    writeFileSync(join(vit, 'preprocessor_config.json'), JSON.stringify({ image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], size: { height: 32, width: 32 } }));
    const text = join(tmp, 'clip-text');
    mkdirSync(text);
    copyFileSync(join(fixtures, 'text_clip_tiny.safetensors'), join(text, 'model.safetensors'));
    copyFileSync(join(fixtures, 'tokenizer-clip-tiny.json'), join(text, 'tokenizer.json'));
    const st = parseSafetensors(new Uint8Array(readFileSync(join(text, 'model.safetensors'))), 'text');
    const [vocab, width] = st.tensors.get('text_model.embeddings.token_embedding.weight')!.shape as [number, number];
    writeFileSync(
      join(text, 'config.json'),
      JSON.stringify({
        projection_dim: st.tensors.get('text_projection.weight')!.shape[0],
        text_config: { vocab_size: vocab, hidden_size: width, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 4 * width, max_position_embeddings: st.tensors.get('text_model.embeddings.position_embedding.weight')!.shape[0] },
      }),
    );
  });

  it('a folder in 3 shards, merged, gives the bytes of the unsharded job (safetensors, JSON, JSON Lines); a missing shard is named', () => {
    for (const ext of ['safetensors', 'json', 'jsonl']) {
      const whole = mpfgvc('features', '--vision', 'vit-hf', 'birds/images', '--batch', '3', '--out', `all.${ext}`);
      expect(whole.code, whole.stderr).toBe(0);
      for (const i of [1, 2, 3]) expect(mpfgvc('features', '--vision', 'vit-hf', 'birds/images', '--batch', '3', '--shard', `${i}/3`, '--out', `s${i}.${ext}`).code).toBe(0);
      const m = mpfgvc('merge', `s1.${ext}`, `s2.${ext}`, `s3.${ext}`, '--out', `merged.${ext}`);
      expect(m.code, m.stderr).toBe(0);
      expect(m.stdout).toContain('merged 3 shards: 12 rows');
      expect(readFileSync(join(tmp, `merged.${ext}`)).equals(readFileSync(join(tmp, `all.${ext}`))), ext).toBe(true);
      // The shards differ from the whole (each holds a third of the rows) and no partial file stays behind.
      expect(readFileSync(join(tmp, `s1.${ext}`)).length).toBeLessThan(readFileSync(join(tmp, `all.${ext}`)).length);
      expect(existsSync(join(tmp, `s1.${ext}.partial`))).toBe(false);
      expectOneLine(mpfgvc('merge', `s1.${ext}`, `s3.${ext}`, '--out', `bad.${ext}`), 1, /^mpfgvc: merge: 4 of 12 inputs missing, the first is input 1 /);
      expectOneLine(mpfgvc('merge', `s1.${ext}`, `s1.${ext}`, `s2.${ext}`, `s3.${ext}`, '--out', `bad.${ext}`), 1, /appears in two shards/);
    }
    expectOneLine(mpfgvc('merge', 'all.safetensors', 'all.safetensors', '--out', 'bad.safetensors'), 1, /all.safetensors: not a shard's output/);
  });

  it('inputs from a folder, a glob and a list file are the same images in the same order; predict --jsonl streams rows that merge across shards', () => {
    const sorted = [...images].sort();
    writeFileSync(join(tmp, 'list.txt'), `# the test images\n${sorted.join('\n')}\n\n`);
    const rows = (r: { stdout: string }) => r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { index: number; input: string; embedding: number[] });
    const byFolder = rows(mpfgvc('features', '--vision', 'vit-hf', 'birds/images', '--jsonl'));
    const byGlob = rows(mpfgvc('features', '--vision', 'vit-hf', 'birds/images/**/*.png', '--jsonl'));
    const byList = rows(mpfgvc('features', '--vision', 'vit-hf', '--list', 'list.txt', '--jsonl'));
    expect(byFolder.map((r) => r.index)).toEqual([...Array(12).keys()]);
    expect(byGlob.map((r) => r.embedding)).toEqual(byFolder.map((r) => r.embedding));
    expect(byList.map((r) => r.embedding)).toEqual(byFolder.map((r) => r.embedding));
    expect(byList.map((r) => r.input)).toEqual(sorted);
    const whole = mpfgvc('predict', '--checkpoint', 'tiny.safetensors', '--list', 'list.txt', '--jsonl', '--top', '2');
    expect(whole.code, whole.stderr).toBe(0);
    expect(whole.stdout.trim().split('\n')).toHaveLength(12);
    for (const i of [1, 2]) writeFileSync(join(tmp, `p${i}.jsonl`), mpfgvc('predict', '--checkpoint', 'tiny.safetensors', '--list', 'list.txt', '--jsonl', '--top', '2', '--shard', `${i}/2`).stdout);
    expect(mpfgvc('merge', 'p2.jsonl', 'p1.jsonl', '--out', 'p.jsonl').code).toBe(0);
    expect(readFileSync(join(tmp, 'p.jsonl'), 'utf8')).toBe(whole.stdout);
    expectOneLine(mpfgvc('predict', '--checkpoint', 'tiny.safetensors', 'nothing/**/*.jpg'), 2, /^mpfgvc: nothing\/\*\*\/\*.jpg: no file matches$/);
    expectOneLine(mpfgvc('predict', '--checkpoint', 'tiny.safetensors', 'birds/images', '--shard', '4/3'), 2, /--shard.*expected i\/n with 1 <= i <= n/);
  });

  it('image embeddings from an HF ViT folder, one row per image', () => {
    const r = mpfgvc('features', '--vision', 'vit-hf', images[0]!, images[4]!, images[8]!);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ kind: 'image', dim: 32 });
    expect(out.embeddings).toHaveLength(3);
    for (const e of out.embeddings) expect(e.every(Number.isFinite)).toBe(true);
    expect(out.embeddings[0]).not.toEqual(out.embeddings[1]);
  });

  it('text embeddings from a CLIP text folder into safetensors', () => {
    const r = mpfgvc('features', '--text', 'clip-text', 'a small bird', 'a red wing bar', '--out', 'text.safetensors');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/wrote 2 text embeddings of width 24 to text.safetensors/);
    const st = parseSafetensors(new Uint8Array(readFileSync(join(tmp, 'text.safetensors'))), 'out');
    expect(st.tensors.get('embeddings')!.shape).toEqual([2, 24]);
    expect(JSON.parse(st.metadata.inputs!)).toEqual(['a small bird', 'a red wing bar']);
    expect(Array.from(readF32(st, 'embeddings')).every(Number.isFinite)).toBe(true);
  });

  it('needs exactly one checkpoint kind, and an existing folder', () => {
    expectOneLine(mpfgvc('features', '--vision', 'vit-hf', '--text', 'clip-text', 'x'), 2, /^mpfgvc: features: give exactly one of --vision <dir> or --text <dir>$/);
    expectOneLine(mpfgvc('features', '--vision', 'nowhere', images[0]!), 2, /^mpfgvc: --vision nowhere: no such folder$/);
    expectOneLine(mpfgvc('features', '--text', 'vit-hf', 'bird'), 2, /no tokenizer.json/);
    expectOneLine(mpfgvc('features', '--vision', 'vit-hf', '--out', 'x.txt', images[0]!), 2, /expected a .json, .jsonl or .safetensors file name/);
  });
});

describe('mpfgvc train, eval and demo', () => {
  it('train: a tiny two-stage run with its files, then eval and predict on the run folder', () => {
    writeFileSync(join(tmp, 'train.json'), JSON.stringify({ classes: 3, 'per-class': 8, 'test-per-class': 2, 'stage1-epochs': 1, 'stage2-epochs': 1, 'stage1-batch': 8, 'stage2-batch': 8 }));
    const r = mpfgvc('train', '--config', 'train.json', '--out', 'run', '--select-k', '6', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.steps).toBe(6);
    expect(out.stages.map((s: { stage: number }) => s.stage)).toEqual([1, 2]);
    for (const f of ['config.json', 'cli.json', 'metrics.jsonl', 'checkpoint.json', 'model.safetensors', 'summary.json', 'eval-stage2.json']) expect(existsSync(join(tmp, 'run', f)), f).toBe(true);
    const cfg = JSON.parse(readFileSync(join(tmp, 'run', 'config.json'), 'utf8'));
    expect(cfg.model.selectK).toBe(6);
    expect(cfg.stage1).toMatchObject({ epochs: 1, batchSize: 8 });
    expect(JSON.parse(readFileSync(join(tmp, 'run', 'cli.json'), 'utf8'))).toMatchObject({ classes: 3, 'per-class': 8, 'select-k': 6 });
    expect(r.stderr).toMatch(/\nstage 2 embedding  24\/24  100%  \d+(\.\d)? img\/s  done in \d+:\d\d\nstage 2: embedded in /);
    expect(r.stderr).toMatch(/stage 2  epoch 1\/1  100%  \d+(\.\d)? img\/s  loss \d\.\d{4}  lr \S+  done in \d+:\d\d/);

    expectOneLine(mpfgvc('eval', 'run', '--out', 'nowhere/eval.json'), 2, /^mpfgvc: --out nowhere\/eval.json: no such folder .*nowhere$/);
    const e = mpfgvc('eval', 'run', '--json');
    expect(e.code, e.stderr).toBe(0);
    const ev = JSON.parse(e.stdout);
    expect(ev.count).toBe(6);
    expect(ev.top1).toEqual(out.stages[1].top1);

    const p = mpfgvc('predict', '--checkpoint', 'run', '--top', '1', images[0]!);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/ensemble +\S+-beak/);
  });

  it('train --prompts fixed and --objective vision: recorded in the run, the ViT-only run evaluated and predicted on its vision head', () => {
    const fixed = mpfgvc('train', '--config', 'train.json', '--out', 'run-fixed', '--prompts', 'fixed', '--prompt-template', 'a {class} {superCategory}', '--json');
    expect(fixed.code, fixed.stderr).toBe(0);
    const cfg = JSON.parse(readFileSync(join(tmp, 'run-fixed', 'config.json'), 'utf8'));
    expect(cfg.model).toMatchObject({ prompts: 'fixed', objective: 'mpfgvc' });
    expect(cfg.promptTemplate).toBe('a {class} {superCategory}');
    // The demo's text tower reads the prompts' words: 'a', the first class name's four words, 'bird'.
    expect(cfg.promptTokens.classPrompts).toHaveLength(3);
    expect(cfg.promptTokens.classPrompts[0]).toHaveLength(6);
    expect(cfg.model.text.vocabSize).toBeGreaterThan(3);
    expect(JSON.parse(fixed.stdout).stages[1].top1).toHaveProperty('ensemble');

    const vit = mpfgvc('train', '--config', 'train.json', '--stage2-epochs', '0', '--out', 'run-vit', '--objective', 'vision', '--json');
    expect(vit.code, vit.stderr).toBe(0);
    const out = JSON.parse(vit.stdout);
    expect(out.stages.map((s: { stage: number }) => s.stage)).toEqual([1]);
    expect(Object.keys(out.stages[0].top1)).toEqual(['vision']);
    expect(JSON.parse(readFileSync(join(tmp, 'run-vit', 'config.json'), 'utf8')).model.objective).toBe('vision');
    const e = mpfgvc('eval', 'run-vit', '--json');
    expect(e.code, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).top1).toEqual(out.stages[0].top1);
    const p = mpfgvc('predict', '--checkpoint', 'run-vit', '--top', '1', images[0]!);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/vision +\S+-beak/);
    expect(p.stdout).not.toMatch(/ensemble|vlfm/);

    expectOneLine(mpfgvc('train', '--config', 'train.json', '--out', 'x', '--objective', 'vision'), 2, /^mpfgvc: config: stage2.epochs must be 0 with model.objective 'vision' .*, got 1$/);
    expectOneLine(mpfgvc('train', '--data', 'auto', '--data-root', 'birds', '--out', 'x', '--prompts', 'fixed'), 2, /^mpfgvc: --prompts fixed with --model demo needs --tokenizer/);
    expectOneLine(mpfgvc('train', '--prompts', 'learned'), 2, /argument 'learned' is invalid. Allowed choices are datp, fixed/);
  });

  it('train: bad flags, a missing dataset, a taken run folder and --resume with new flags are one line each', () => {
    expectOneLine(mpfgvc('train', '--data', 'cub', '--out', 'x'), 2, /^mpfgvc: --data cub needs --data-root <dir>$/);
    expectOneLine(mpfgvc('train', '--data', 'cub', '--data-root', 'nowhere', '--out', 'x'), 2, /^mpfgvc: CUB-200-2011 at .*nowhere: missing images\/$/);
    expectOneLine(mpfgvc('train', '--data', 'auto', '--data-root', 'birds', '--model', 'vit-b16', '--out', 'x'), 2, /give tokenizer/);
    expectOneLine(mpfgvc('train', '--stage1-optimizer', 'adam'), 2, /argument 'adam' is invalid. Allowed choices are adamw, sgd/);
    expectOneLine(mpfgvc('train', '--out', 'run'), 1, /^mpfgvc: .*run already holds a run: `mpfgvc train --resume .*run` continues it, --overwrite starts again there, or choose another --out$/);
    expectOneLine(mpfgvc('train', '--resume', 'run', '--stage1-lr', '0.1'), 2, /^mpfgvc: --resume continues with the run's recorded configuration; drop --stage1-lr$/);
    expectOneLine(mpfgvc('eval', 'nowhere'), 2, /^mpfgvc: checkpoint nowhere: no such file or folder$/);
  });

  it('demo --ablation: trains, writes curves and overlays, and tabulates the variants', async () => {
    const r = mpfgvc('demo', '--out', 'demo', '--classes', '3', '--epochs', '1,1', '--explain', '2', '--ablation', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.explain).toHaveLength(2);
    for (const f of [out.curves.png, out.curves.svg, ...out.explain]) expect(existsSync(f), f).toBe(true);
    expect((await sharp(out.explain[0]).metadata()).width).toBe(2 * 448 + 12);
    expect(out.ablation.map((a: { name: string }) => a.name)).toEqual(['MP-FGVC', 'w/o SsVP', 'w/o VLFM (after stage 1)', 'w/o DaTP', 'ViT only']);
    const config = (dir: string) => JSON.parse(readFileSync(join(tmp, 'demo', dir, 'config.json'), 'utf8'));
    expect(config('ablation-no-ssvp').model.selectK).toBe(0);
    const noDatp = config('ablation-no-datp');
    expect(noDatp.model.prompts).toBe('fixed');
    expect(new Set(noDatp.promptTokens.classPrompts.map((p: number[]) => p.join(' '))).size).toBe(3);
    const vitOnly = config('ablation-vit-only');
    expect(vitOnly.model).toMatchObject({ objective: 'vision', selectK: 0 });
    expect(vitOnly.stage2.epochs).toBe(0);
    const [full, noSsvp, noVlfm, withoutDatp, vit] = out.ablation;
    for (const row of [full, noSsvp, withoutDatp]) for (const h of ['vision', 'text', 'vlfm', 'ensemble']) expect(row.top1[h], `${row.name} ${h}`).toBeTypeOf('number');
    expect(Object.keys(noVlfm.top1)).toEqual(['vision', 'text']);
    expect(Object.keys(vit.top1)).toEqual(['vision']);
    expect(vit.top1.vision).toBeTypeOf('number');
    expect(r.stderr).not.toMatch(/not run/);
    expect(r.stderr).toMatch(/ViT only +\d+\.\d +- +- +-   L_v alone/);
    expect(JSON.parse(readFileSync(join(tmp, 'demo', 'cli.json'), 'utf8'))).toMatchObject({ classes: 3, epochs: [1, 1], ablation: true });
    expectOneLine(mpfgvc('explain', '--checkpoint', 'demo/ablation-no-ssvp', images[0]!), 1, /the model has no SsVP \(selectK 0\), nothing to draw$/);
    expectOneLine(mpfgvc('demo', '--out', 'demo'), 1, /already holds a run/);
  });
});

/** A command running in the background, its output gathered as it comes. */
function start(...args: string[]) {
  const child = spawn(process.execPath, [bin, ...args], { cwd: tmp });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  return {
    child,
    exited,
    output: () => out,
    /** Resolves once the output matches `re`; rejects if the process ends first. */
    async waitFor(re: RegExp): Promise<void> {
      let ended = false;
      void exited.then(() => (ended = true));
      while (!re.test(out)) {
        if (ended) throw new Error(`exited before ${re}:\n${out}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

/** Step numbers of a run's metrics rows, in file order. */
const stepsOf = (dir: string) =>
  readFileSync(join(tmp, dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => 'loss' in r)
    .map((r) => r.step as number);
const consecutive = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe('runs that never lose work', () => {
  const synth = ['train', '--data', 'synth', '--classes', '3', '--per-class', '8', '--test-per-class', '2', '--stage1-batch', '8', '--stage2-batch', '8', '--eval-batch', '8'];

  it('Ctrl-C stops after the step with a checkpoint, says how to resume, exits 130; the resume completes the run', async () => {
    const run = start(...synth, '--stage1-epochs', '4', '--stage2-epochs', '1', '--out', 'int');
    await run.waitFor(/stage 1: 4 epochs/);
    run.child.kill('SIGINT');
    expect(await run.exited, run.output()).toBe(130);
    expect(run.output()).toMatch(/SIGINT: stopping after this step and writing a checkpoint \(Ctrl-C again exits at once\)/);
    expect(run.output()).toMatch(/^mpfgvc: SIGINT: stopped at stage 1, step (\d+); checkpoint .*int\/checkpoint.json; continue with: mpfgvc train --resume .*int$/m);
    expect(existsSync(join(tmp, 'int', 'run.lock'))).toBe(false);
    const r = mpfgvc('train', '--resume', 'int', '--json');
    expect(r.code, r.stderr).toBe(0);
    const done = JSON.parse(r.stdout);
    expect(done.stages.map((s: { stage: number }) => s.stage)).toEqual([1, 2]);
    expect(stepsOf('int')).toEqual(consecutive(done.steps));
  });

  it('SIGTERM twice exits at once with 143, leaving no lock and nothing half-written', async () => {
    const run = start(...synth, '--stage1-epochs', '40', '--stage2-epochs', '0', '--out', 'term');
    // The first step compiles the kernels: a second signal during it comes before any checkpoint.
    await run.waitFor(/stage 1: 40 epochs/);
    run.child.kill('SIGTERM');
    await run.waitFor(/SIGTERM: stopping after this step/);
    run.child.kill('SIGTERM');
    expect(await run.exited, run.output()).toBe(143);
    expect(run.output()).toMatch(/SIGTERM again: exiting now; the run resumes from its last checkpoint/);
    expect(existsSync(join(tmp, 'term', 'run.lock'))).toBe(false);
    expect(readdirSync(join(tmp, 'term')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(existsSync(join(tmp, 'term', 'checkpoint.json'))).toBe(false);
    expectOneLine(mpfgvc('train', '--resume', 'term'), 2, /^mpfgvc: --resume term: no checkpoint.json there$/);
  });

  it('a folder in use is refused naming its pid; a killed holder leaves a stale lock that the resume takes over; a finished run is not overwritten by accident', async () => {
    const run = start(...synth, '--stage1-epochs', '16', '--stage2-epochs', '1', '--out', 'busy');
    await run.waitFor(/checkpoint at stage 1/);
    const pid = run.child.pid!;
    expectOneLine(mpfgvc('train', '--resume', 'busy'), 1, new RegExp(`^mpfgvc: .*busy is in use by train \\(pid ${pid}, since [^)]+\\); wait for it to end$`));
    expectOneLine(mpfgvc(...synth, '--out', 'busy', '--overwrite'), 1, new RegExp(`busy is in use by train \\(pid ${pid}, `));
    run.child.kill('SIGKILL');
    await run.exited;
    expect(existsSync(join(tmp, 'busy', 'run.lock'))).toBe(true);
    const r = mpfgvc('train', '--resume', 'busy', '--json');
    expect(r.code, r.stderr).toBe(0);
    const steps = JSON.parse(r.stdout).steps as number;
    expect(stepsOf('busy')).toEqual(consecutive(steps));
    expect(existsSync(join(tmp, 'busy', 'run.lock'))).toBe(false);

    expectOneLine(mpfgvc(...synth, '--out', 'busy'), 1, /busy already holds a run: `mpfgvc train --resume .*busy` continues it, --overwrite starts again there/);
    const again = mpfgvc(...synth, '--stage1-epochs', '1', '--stage2-epochs', '1', '--out', 'busy', '--overwrite', '--json');
    expect(again.code, again.stderr).toBe(0);
    expect(stepsOf('busy')).toEqual(consecutive(JSON.parse(again.stdout).steps));
  });

  it('--resume lengthens a finished run and branches it into a new folder', () => {
    const base = mpfgvc(...synth, '--stage1-epochs', '1', '--stage2-epochs', '1', '--out', 'short', '--json');
    expect(base.code, base.stderr).toBe(0);
    const grown = mpfgvc('train', '--resume', 'short', '--stage2-epochs', '2', '--out', 'short-longer', '--json');
    expect(grown.code, grown.stderr).toBe(0);
    const g = JSON.parse(grown.stdout);
    expect(g.outDir).toBe(join(tmp, 'short-longer'));
    const b = JSON.parse(base.stdout);
    // Stage 2 trains again from the end of stage 1, twice as long.
    expect(g.steps).toBe(b.steps + b.stages[1].steps);
    expect(JSON.parse(readFileSync(join(tmp, 'short-longer', 'cli.json'), 'utf8'))).toMatchObject({ out: join(tmp, 'short-longer'), 'stage2-epochs': 2 });
    expect(JSON.parse(readFileSync(join(tmp, 'short', 'config.json'), 'utf8')).stage2.epochs).toBe(1);
    expectOneLine(mpfgvc('train', '--resume', 'short', '--stage1-epochs', '0'), 2, /^mpfgvc: stage 1 epochs: a resumed run's stages can only grow \(it has 1\), got 0$/);
  });
});

describe('progress', () => {
  const fake = (isTTY: boolean, out: string[]) => ({ isTTY, write: (s: string) => out.push(s) }) as unknown as NodeJS.WriteStream;

  it('prints plain periodic lines with epoch, rate, loss, lr and ETA when not on a terminal; the rate leaves out the warm-up', () => {
    const out: string[] = [];
    let t = 0;
    const p = new Progress({ label: 'stage 1', total: 100, perEpoch: 25, stream: fake(false, out), interval: 5, now: () => t });
    // The first step takes 10 s (kernels compiling), every later one 0.2 s.
    for (let i = 1; i <= 100; i++) {
      t += i === 1 ? 10_000 : 200;
      p.update(i, 2 - i / 100, 1e-3 * (1 - i / 100));
    }
    p.finish();
    p.finish();
    expect(out[0]).toBe('stage 1  epoch 1/4  1%  warming up  loss 1.9900  lr 9.9e-4\n');
    expect(out[1]).toBe('stage 1  epoch 2/4  26%  5.0 img/s  loss 1.7400  lr 7.4e-4  ETA 0:15\n');
    expect(out.at(-1)).toBe('stage 1  epoch 4/4  100%  5.0 img/s  loss 1.0000  lr 0  done in 0:30\n');
    expect(out.filter((l) => l.includes('done in'))).toHaveLength(1);
  });

  it('redraws one line in place on a terminal, never wider than it: the bar takes the room left, then goes', () => {
    for (const columns of [60, 80, 120]) {
      const out: string[] = [];
      let t = 0;
      const p = new Progress({ label: 'stage 1', total: 30 * 5994, perEpoch: 5994, stream: fake(true, out), columns, now: () => t });
      for (let i = 1; i <= 3; i++) {
        t += 1000;
        p.update(i * 1234, 2.3456, 9.8e-4);
      }
      p.log('stage 1 epoch 0 test top-1: vision 1.0%');
      const lines = out.join('').split(/\r|\n/).map((l) => l.replace(/\x1b\[K/g, '')).filter(Boolean);
      for (const l of lines) expect(l.length, `${columns}: ${l}`).toBeLessThan(columns);
      expect(lines.at(-1)).toMatch(/^stage 1  epoch 1\/30  (2%|\[.*\])  1234 img\/s  .*ETA 2:23$/);
      if (columns >= 80) expect(lines.at(-1)).toMatch(/^stage 1  epoch 1\/30  \[#*-{8,}\]  1234 img\/s  loss 2\.3456  lr 9\.8e-4  ETA 2:23$/);
    }
    const out: string[] = [];
    let t = 0;
    const p = new Progress({ label: 'eval', total: 4, stream: fake(true, out), columns: 80, warmup: 0, now: () => t });
    t = 1000;
    p.update(2);
    expect(out[0]).toBe('\reval  2/4  [###############---------------]  2.0 img/s  ETA 0:01\x1b[K');
    expect(formatDuration(3725)).toBe('1:02:05');
  });
});
