import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEMO_MODEL } from '@mpfgvc/model';
import type { EvalResult } from './eval.js';
import { resolveConfig } from './loop/config.js';
import { MODEL_CARD_MARK, type ModelCardInput, isModelCardFile, mdText, modelCard, writeModelCard } from './model-card.js';
import { classRows, worstFirst } from './per-class.js';

const classes = ['red beak', 'blue | crest', 'green tail', 'grey wing'];

/** 4 classes of 10 test images; the ensemble gets class 1 right 2 times (taken for class 2 7 times), class 3 never. */
function stageTwoEval(): EvalResult {
  const confusion = [
    [9, 1, 0, 0],
    [0, 2, 7, 1],
    [0, 0, 10, 0],
    [4, 3, 3, 0],
  ];
  return {
    count: 40,
    heads: ['vision', 'text', 'vlfm', 'ensemble'],
    top1: { vision: 0.5, text: 0.425, vlfm: 0.4, ensemble: 0.525 },
    top5: { vision: 1, text: 1, vlfm: 1, ensemble: 1 },
    perClass: { vision: [0.8, 0.3, 0.9, 0], text: [0.7, 0.1, 0.9, 0], vlfm: [0.6, 0.2, 0.8, 0], ensemble: [0.9, 0.2, 1, 0] },
    classCounts: [10, 10, 10, 10],
    confusionHead: 'ensemble',
    confusion,
  };
}

function input(): ModelCardInput {
  const config = resolveConfig({
    outDir: '/runs/birds',
    data: { kind: 'folder', root: '/data/CUB_200_2011', valFraction: 0.1 },
    model: { ...DEMO_MODEL, selectK: 7, promptLength: 5 },
    promptTokens: { classIds: [0], sot: 1, eot: 2 },
    pretrained: { vision: '/models/vit-in21k' },
    stage1: { epochs: 3, batchSize: 16, lr: 2e-3, labelSmoothing: 0.1 },
    stage2: { epochs: 2, batchSize: 8, lr: 3e-3 },
  });
  const stageOne: EvalResult = { ...stageTwoEval(), heads: ['vision', 'text'], top1: { vision: 0.45, text: 0.375 }, top5: { vision: 0.975, text: 0.95 } };
  return {
    config,
    data: { classes, superCategory: 'bird', train: 108, val: 12, test: 40, skipped: 1 },
    parameters: 1_234_567,
    stages: [
      { stage: 1, steps: 21, seconds: 12.5, eval: stageOne },
      { stage: 2, steps: 26, seconds: 3.25, eval: stageTwoEval(), val: { count: 12, heads: ['vision', 'ensemble'], top1: { vision: 0.5, ensemble: 7 / 12 }, top5: {} } },
    ],
    complete: true,
    best: { stage: 2, epoch: 1, head: 'ensemble', top1: 7 / 12 },
    reproduce: 'cd /work && mpfgvc train --config runs/birds/cli.json --out runs/birds-again',
    pictures: { curves: 'curves.png', confusion: 'confusion-stage2.svg' },
  };
}

/** The lines of the card's section that starts with `## title`. */
function section(card: string, title: string): string[] {
  const lines = card.split('\n');
  const at = lines.findIndex((l) => l === `## ${title}` || l.startsWith(`## ${title} (`));
  expect(at, title).toBeGreaterThan(0);
  const end = lines.findIndex((l, i) => i > at && l.startsWith('## '));
  return lines.slice(at, end < 0 ? undefined : end);
}

/** A table row's cells. */
const cells = (line: string) => line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());

describe('classRows and worstFirst', () => {
  it('give each class its count, per-head top-1 and the class it is most often taken for; worst first', () => {
    const rows = classRows(stageTwoEval(), classes);
    expect(rows[1]).toEqual({ index: 1, name: 'blue | crest', count: 10, top1: { vision: 0.3, text: 0.1, vlfm: 0.2, ensemble: 0.2 }, confusedWith: { index: 2, name: 'green tail', count: 7 } });
    expect(rows[2]!.confusedWith).toBeUndefined();
    // A tie (3 and 3) goes to the lower class index.
    expect(rows[3]!.confusedWith).toEqual({ index: 0, name: 'red beak', count: 4 });
    expect(worstFirst(rows, 'ensemble').map((r) => r.index)).toEqual([3, 1, 0, 2]);
    expect(worstFirst(rows, 'vision').map((r) => r.index)).toEqual([3, 1, 0, 2]);
  });

  it('leave out classes without test images', () => {
    const r = { ...stageTwoEval(), classCounts: [10, 0, 10, 10], perClass: { ensemble: [0.9, null, 1, 0] }, heads: ['ensemble' as const] };
    expect(worstFirst(classRows(r, classes), 'ensemble').map((x) => x.index)).toEqual([3, 0, 2]);
  });
});

describe('modelCard', () => {
  const card = modelCard(input());

  it('opens with its mark, the dataset and the status', () => {
    const lines = card.split('\n');
    expect(lines[0]).toBe(MODEL_CARD_MARK);
    expect(lines[1]).toBe('# MP-FGVC on CUB\\_200\\_2011: 4 bird classes');
    expect(card).toContain('Trained both stages; ensemble top-1 52.50% on 40 test images. The model is `model.safetensors`.');
  });

  it('gives every head top-1 and top-5 at the end of each stage, validation and best', () => {
    const s = section(card, 'Results on the test split');
    expect(cells(s[2]!)).toEqual(['head', 'stage 1 top-1', 'stage 1 top-5', 'stage 2 top-1', 'stage 2 top-5']);
    const row = (head: string) => cells(s.find((l) => l.startsWith(`| ${head} |`))!);
    expect(row('vision')).toEqual(['vision', '45.00%', '97.50%', '50.00%', '100.00%']);
    expect(row('text')).toEqual(['text', '37.50%', '95.00%', '42.50%', '100.00%']);
    expect(row('vlfm')).toEqual(['vlfm', '-', '-', '40.00%', '100.00%']);
    expect(row('ensemble')).toEqual(['ensemble', '-', '-', '52.50%', '100.00%']);
    expect(s.join('\n')).toContain('Validation at the end of stage 2 (12 images): vision 50.00%, ensemble 58.33%.');
    expect(s.join('\n')).toContain('ensemble top-1 58.33% at stage 2, epoch 1');
  });

  it('lists the worst classes with their accuracy per head and the class they are taken for, and shows the pictures', () => {
    const s = section(card, 'Worst classes');
    expect(s[0]).toBe('## Worst classes (test, end of stage 2, ensemble head)');
    const rows = s.filter((l) => l.startsWith('| ') && !l.startsWith('| class')).map(cells);
    expect(rows).toEqual([
      ['grey wing', '10', '0.00%', '0.00%', '0.00%', '0.00%', 'red beak (4 of 10)'],
      ['blue \\| crest', '10', '20.00%', '30.00%', '10.00%', '20.00%', 'green tail (7 of 10)'],
      ['red beak', '10', '90.00%', '80.00%', '70.00%', '60.00%', 'blue \\| crest (1 of 10)'],
      ['green tail', '10', '100.00%', '90.00%', '90.00%', '80.00%', '-'],
    ]);
    expect(s).toContain('![confusion matrix at the end of stage 2](confusion-stage2.svg)');
    expect(section(card, 'Training curves')).toContain('![loss per stage and top-1 per head](curves.png)');
  });

  it('describes the data, both towers with where they started, K, J, prompts and objective', () => {
    const data = section(card, 'Data').join('\n');
    expect(data).toContain('layout detected at `/data/CUB\\_200\\_2011`');
    expect(data).toContain('- **Classes:** 4 bird subcategories (chance: 25.00%).');
    expect(data).toContain('- **Images:** train 108, validation 12, test 40; 1 unreadable, skipped');
    const model = section(card, 'Model').join('\n');
    const v = DEMO_MODEL.vision;
    expect(model).toContain(`| **image encoder** | ViT: ${v.imageSize}×${v.imageSize} px, patch ${v.patchSize} (${(v.imageSize / v.patchSize) ** 2} patches), width ${v.width}, depth ${v.depth}`);
    expect(model).toContain('started from `/models/vit-in21k`');
    expect(model).toMatch(/\| \*\*text encoder\*\* \| CLIP text transformer: .*; initialised at random; frozen \(DaTP's tokens train\) \|/);
    expect(model).toContain('| **SsVP K** | 7 patches selected |');
    expect(model).toContain('| **DaTP J** | 5 learned tokens per class |');
    expect(model).toContain('| **prompts** | datp: learned prompt tokens |');
    expect(model).toContain('| **objective** | mpfgvc: L_v + L_i2t in stage 1, then VLFM in stage 2 |');
    expect(model).toContain('| **parameters** | 1.23 M (1,234,567) |');
  });

  it("tabulates every stage setting of the configuration, the steps done, and the run's other settings", () => {
    const s = section(card, 'Training');
    const row = (label: string) => cells(s.find((l) => l.startsWith(`| ${label} |`))!);
    expect(row('epochs')).toEqual(['epochs', '3', '2']);
    expect(row('batch size')).toEqual(['batch size', '16', '8']);
    expect(row('peak learning rate')).toEqual(['peak learning rate', '0.002', '0.003']);
    expect(row('label smoothing')).toEqual(['label smoothing', '0.1', '0']);
    expect(row('augmentation')).toEqual(['augmentation', 'true', 'false']);
    expect(row('optimiser steps done')).toEqual(['optimiser steps done', '21 in 12.5 s', '26 in 3.3 s']);
    // One row per StageConfig key, whatever it holds.
    expect(s.filter((l) => l.startsWith('| ')).length - 1).toBe(Object.keys(input().config.stage1).length + 1);
    expect(s.join('\n')).toMatch(/Run: seed 0, checkpointEvery 0, .*maxSkippedFraction 0\.05\./);
  });

  it('gives the command that reproduces the run, or the Node call on config.json', () => {
    expect(section(card, 'Reproduce')).toContain('cd /work && mpfgvc train --config runs/birds/cli.json --out runs/birds-again');
    const { reproduce: _, ...rest } = input();
    const node = section(modelCard(rest), 'Reproduce').join('\n');
    expect(node).toContain(`readFileSync("/runs/birds/config.json", "utf8")`);
    expect(node).toContain(`outDir: "/runs/birds-again"`);
  });

  it('says which stage is done while the run goes on, without a model file or pictures', () => {
    const i = input();
    const partial = modelCard({ ...i, complete: false, stages: i.stages.slice(0, 1), pictures: {} });
    expect(partial).toContain('Stage 1 of 2 finished (ensemble top-1 - on 40 test images)');
    expect(partial).not.toContain('`model.safetensors`');
    expect(partial).not.toContain('![');
    expect(partial).toContain('`mpfgvc plot <this folder>` draws them');
  });

  it('escapes names from the dataset so they cannot break the Markdown', () => {
    expect(mdText('a|b *c* [d](e) <img>\nf')).toBe('a\\|b \\*c\\* \\[d\\]\\(e\\) \\<img\\> f');
  });
});

describe('writeModelCard', () => {
  it('writes README.md showing the pictures present in the folder; tells its card from other files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'card-'));
    const { pictures: _, ...rest } = input();
    const path = writeModelCard(dir, rest);
    expect(readdirSync(dir)).toEqual(['README.md']);
    expect(readFileSync(path, 'utf8')).not.toContain('![');
    writeFileSync(join(dir, 'curves.svg'), '<svg/>');
    writeFileSync(join(dir, 'confusion-stage2.svg'), '<svg/>');
    writeModelCard(dir, rest);
    const card = readFileSync(path, 'utf8');
    expect(card).toContain('](curves.svg)');
    expect(card).toContain('](confusion-stage2.svg)');
    expect(isModelCardFile(path)).toBe(true);
    writeFileSync(join(dir, 'own.md'), '# my notes\n');
    expect(isModelCardFile(join(dir, 'own.md'))).toBe(false);
    execFileSync('mkfifo', [join(dir, 'pipe')]);
    expect(isModelCardFile(join(dir, 'pipe'))).toBe(false);
    expect(isModelCardFile(join(dir, 'missing.md'))).toBe(false);
  });
});
