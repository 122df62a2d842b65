// The model card: README.md in a run folder, beside the model, the first thing a person reads. It
// says what the model was trained on, what it is, how it was trained, how well each head does on
// the test split at the end of each stage, which classes it gets wrong most and what it takes them
// for, and the command that trains it again. `modelCard` is a pure function of what the run knows;
// the run writes the card at each stage's end and when it finishes (writeModelCard), and a caller
// that draws pictures into the folder afterwards (the demo's curves) writes it again.
import { closeSync, existsSync, lstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { type Stage, numPatches } from '@mpfgvc/model';
import { writeFileAtomic } from './atomic.js';
import type { EvalResult, Head } from './eval.js';
import type { StageConfig, TrainConfig } from './loop/config.js';
import { type ClassRow, classRows, worstFirst } from './per-class.js';

export const MODEL_CARD_FILE = 'README.md';

/** The card's first line: how a card is told from a README.md of the user's own (which --overwrite keeps). */
export const MODEL_CARD_MARK = '<!-- mpfgvc model card: written by the training run, rewritten at each stage end -->';

/** How many of the worst classes the card lists. */
export const CARD_WORST_CLASSES = 5;

export interface ModelCardStage {
  stage: Stage;
  /** Optimiser steps of the stage. */
  steps: number;
  seconds: number;
  /** On the test split (eval-stageN.json). */
  eval: EvalResult;
  /** On the validation split, when the run has one. */
  val?: Pick<EvalResult, 'count' | 'heads' | 'top1' | 'top5'>;
}

export interface ModelCardInput {
  config: TrainConfig;
  data: {
    classes: readonly string[];
    superCategory: string;
    /** Images per split (the synthetic birds with `fresh`: the training images of one epoch). */
    train: number;
    val: number;
    test: number;
    /** Unreadable images skipped. */
    skipped: number;
  };
  /** The model's parameter count (every tensor), when known. */
  parameters?: number;
  /** The stages finished so far, in order. */
  stages: readonly ModelCardStage[];
  /** Every stage trained and model.safetensors written. */
  complete: boolean;
  /** Where best.safetensors comes from (runs with a validation split). */
  best?: { stage: Stage; epoch: number; head: string; top1: number };
  /** A shell command that trains the run again; default: train() from Node on config.json. */
  reproduce?: string;
  /** Pictures beside the card (file names in the run folder), shown when given. */
  pictures?: { curves?: string; confusion?: string };
}

/** Markdown special characters in a name from a dataset, escaped; control characters and line breaks dropped. */
export function mdText(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/([\\`*_{}[\]()<>#+!|~])/g, '\\$1');
}

const pct = (x: number | null | undefined) => (typeof x === 'number' ? `${(100 * x).toFixed(2)}%` : '-');

function count(n: number): string {
  return n.toLocaleString('en-US');
}

function mega(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : String(n);
}

function table(header: readonly string[], align: readonly ('l' | 'r')[], rows: readonly (readonly string[])[]): string[] {
  return [`| ${header.join(' | ')} |`, `|${align.map((a) => (a === 'r' ? '---:' : '---')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

/** A value of the configuration as the card prints it. */
function value(v: unknown): string {
  if (typeof v === 'string') return `\`${v.replace(/`/g, "'")}\``;
  if (Array.isArray(v) || (v && typeof v === 'object')) return `\`${JSON.stringify(v).replace(/`/g, "'")}\``;
  return String(v);
}

function datasetName(c: TrainConfig): string {
  if (c.data.kind === 'synth') return 'synthetic birds';
  const parts = c.data.root.split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? c.data.root;
}

function dataSection(input: ModelCardInput): string[] {
  const c = input.config;
  const d = input.data;
  const lines = ['## Data', ''];
  if (c.data.kind === 'synth') {
    const s = c.data;
    lines.push(
      `- **Dataset:** the embedded synthetic birds, generated in memory at the model's input size (seed ${s.seed}; ${s.trainPerClass} training, ${s.valPerClass} validation and ${s.testPerClass} test images per class${s.fresh ? '; new training images every epoch' : ''}).`,
    );
  } else {
    const f = c.data;
    lines.push(
      `- **Dataset:** ${f.format === 'auto' ? 'layout detected' : `\`${f.format}\` layout`} at \`${mdText(f.root)}\`; ${f.valFraction > 0 ? `${f.valFraction} of each class's training images held out for validation (seeded by the run's seed)` : 'the whole training split trained on (no validation split)'}; random resized crop of area [${f.cropScale.join(', ')}] in stage 1.`,
    );
  }
  lines.push(`- **Classes:** ${d.classes.length} ${mdText(d.superCategory)} subcategories (chance: ${pct(1 / Math.max(1, d.classes.length))}).`);
  const trainNote = c.data.kind === 'synth' && c.data.fresh ? ' per epoch' : '';
  lines.push(`- **Images:** train ${count(d.train)}${trainNote}, validation ${count(d.val)}, test ${count(d.test)}${d.skipped ? `; ${count(d.skipped)} unreadable, skipped (summary.json names them)` : ''}.`);
  return lines;
}

function modelSection(input: ModelCardInput): string[] {
  const c = input.config;
  const m = c.model;
  const v = m.vision;
  const t = m.text;
  const from = (dir: string | undefined) => (dir ? `started from \`${mdText(dir)}\`` : 'initialised at random');
  const visionOnly = m.objective === 'vision';
  const heads: Head[] = visionOnly ? ['vision'] : ['vision', 'text', 'vlfm', 'ensemble'];
  const norm = typeof c.normalization === 'string' ? c.normalization : `mean [${c.normalization.mean.join(', ')}], std [${c.normalization.std.join(', ')}]`;
  const rows: [string, string][] = [
    ['image encoder', `ViT: ${v.imageSize}×${v.imageSize} px, patch ${v.patchSize} (${numPatches(v)} patches), width ${v.width}, depth ${v.depth}, ${v.heads} heads, MLP ×${v.mlpRatio}, ${v.activation}${v.preNorm ? ', pre-norm' : ''}; ${from(c.pretrained?.vision)}`],
    ['text encoder', `CLIP text transformer: width ${t.width}, depth ${t.depth}, ${t.heads} heads, MLP ×${t.mlpRatio}, ${t.activation}, vocabulary ${count(t.vocabSize)}, context ${t.contextLength}; ${from(c.pretrained?.text)}; frozen${visionOnly ? ', unused' : m.prompts === 'fixed' ? '' : " (DaTP's tokens train)"}`],
    ['joint space D', String(m.embedDim)],
    ['SsVP K', m.selectK > 0 ? `${m.selectK} patches selected` : '0 (SsVP off)'],
    ['DaTP J', `${m.promptLength} learned tokens per class`],
    ['prompts', m.prompts === 'fixed' ? `fixed: \`${c.promptTemplate.replace(/`/g, "'")}\` through the frozen text encoder (w/o DaTP)` : 'datp: learned prompt tokens'],
    ['objective', visionOnly ? 'vision: ViT only, L_v alone, no stage 2' : 'mpfgvc: L_v + L_i2t in stage 1, then VLFM in stage 2'],
    ['heads', `${heads.join(', ')} (shipped: ${visionOnly ? 'vision' : 'ensemble'})`],
    ['temperature τ', String(m.temperature)],
    ['vision head on', m.visionHeadOn],
    ['input normalisation', norm],
    ['tokenizer', c.tokenizer ? `\`${mdText(c.tokenizer)}\`` : 'none: prompt token ids given in the configuration'],
  ];
  if (input.parameters !== undefined) rows.push(['parameters', `${mega(input.parameters)} (${count(input.parameters)})`]);
  return ['## Model', '', ...table(['', ''], ['l', 'l'], rows.map(([k, x]) => [`**${k}**`, x]))];
}

const STAGE_LABELS: Partial<Record<keyof StageConfig, string>> = {
  epochs: 'epochs',
  batchSize: 'batch size',
  accumulate: 'batches per step (accumulate)',
  optimizer: 'optimiser',
  lr: 'peak learning rate',
  minLr: 'final learning rate (cosine floor)',
  warmupEpochs: 'linear warm-up (epochs)',
  weightDecay: 'weight decay',
  momentum: 'momentum (SGD)',
  clipNorm: 'gradient-norm clipping',
  labelSmoothing: 'label smoothing',
  augment: 'augmentation',
};

// Run-level settings printed under the stages' table; the rest of TrainConfig has its own section.
const RUN_KEYS_SHOWN_ELSEWHERE = new Set(['outDir', 'data', 'model', 'normalization', 'tokenizer', 'pretrained', 'promptTokens', 'promptTemplate', 'stage1', 'stage2']);

function trainingSection(input: ModelCardInput): string[] {
  const c = input.config;
  const done = (s: Stage) => input.stages.find((x) => x.stage === s);
  const keys = [...new Set([...(Object.keys(STAGE_LABELS) as (keyof StageConfig)[]), ...(Object.keys(c.stage1) as (keyof StageConfig)[])])];
  const rows = keys.map((k) => [STAGE_LABELS[k] ?? k, value(c.stage1[k]), value(c.stage2[k])]);
  const steps = (s: Stage) => {
    const r = done(s);
    return r ? `${count(r.steps)} in ${r.seconds.toFixed(1)} s` : (s === 1 ? c.stage1 : c.stage2).epochs === 0 ? '-' : 'not finished';
  };
  rows.push(['optimiser steps done', steps(1), steps(2)]);
  const lines = ['## Training', '', ...table(['setting', 'stage 1', 'stage 2'], ['l', 'r', 'r'], rows), ''];
  lines.push('The learning rate warms up linearly, then follows a cosine to its floor, per stage. Weight decay skips biases, norms, embeddings and the DaTP tokens.');
  const run = Object.entries(c).filter(([k]) => !RUN_KEYS_SHOWN_ELSEWHERE.has(k));
  lines.push('', `Run: ${run.map(([k, x]) => `${k} ${value(x)}`).join(', ')}.`);
  return lines;
}

function resultsSection(input: ModelCardInput): string[] {
  const stages = input.stages;
  const lines = ['## Results on the test split', ''];
  if (stages.length === 0) return [...lines, 'No stage has finished yet.'];
  const heads = [...new Set(stages.flatMap((s) => s.eval.heads))];
  const header = ['head', ...stages.flatMap((s) => [`stage ${s.stage} top-1`, `stage ${s.stage} top-5`])];
  const rows = heads.map((h) => [h, ...stages.flatMap((s) => [pct(s.eval.top1[h]), pct(s.eval.top5[h])])]);
  lines.push(...table(header, ['l', ...header.slice(1).map(() => 'r' as const)], rows), '');
  const counts = stages.map((s) => `stage ${s.stage}: ${count(s.eval.count)} images (\`eval-stage${s.stage}.json\`)`).join('; ');
  lines.push(`Evaluated at each stage's end; ${counts}.`);
  const withVal = stages.filter((s) => s.val);
  for (const s of withVal) lines.push(`Validation at the end of stage ${s.stage} (${count(s.val!.count)} images): ${s.val!.heads.map((h) => `${h} ${pct(s.val!.top1[h])}`).join(', ')}.`);
  if (input.best) {
    const b = input.best;
    lines.push(`\`best.safetensors\` is the model at its best validation result: ${b.head} top-1 ${pct(b.top1)} at stage ${b.stage}, epoch ${b.epoch}.`);
  }
  return lines;
}

function worstSection(input: ModelCardInput): string[] {
  const last = input.stages[input.stages.length - 1];
  if (!last) return [];
  const r = last.eval;
  const head = r.confusionHead;
  const rows = classRows(r, input.data.classes);
  const worst = worstFirst(rows, head).slice(0, CARD_WORST_CLASSES);
  const lines = [`## Worst classes (test, end of stage ${last.stage}, ${head} head)`, ''];
  const others = r.heads.filter((h) => h !== head);
  const taken = (w: ClassRow) => (w.confusedWith ? `${mdText(w.confusedWith.name)} (${w.confusedWith.count} of ${w.count})` : '-');
  lines.push(
    ...table(
      ['class', 'test images', `top-1 (${head})`, ...others.map((h) => `top-1 (${h})`), 'most often taken for'],
      ['l', 'r', 'r', ...others.map(() => 'r' as const), 'l'],
      worst.map((w) => [mdText(w.name), String(w.count), pct(w.top1[head]), ...others.map((h) => pct(w.top1[h])), taken(w)]),
    ),
    '',
  );
  lines.push(`\`mpfgvc eval <this folder> --by-class\` lists every class; \`confusion-stage${last.stage}.csv\` holds the ${head} head's confusion matrix (true class per row).`);
  if (input.pictures?.confusion) lines.push('', `![confusion matrix at the end of stage ${last.stage}](${input.pictures.confusion})`);
  return lines;
}

function curvesSection(input: ModelCardInput): string[] {
  const lines = ['## Training curves', ''];
  if (input.pictures?.curves) return [...lines, `![loss per stage and top-1 per head](${input.pictures.curves})`];
  return [...lines, '`mpfgvc plot <this folder>` draws them from `metrics.jsonl` (curves.svg, curves.png).'];
}

/** The default reproduction: train() on the recorded configuration, into another folder. */
function nodeCommand(outDir: string): string {
  const q = (s: string) => JSON.stringify(s).replace(/'/g, "'\\''");
  const cfg = q(join(outDir, 'config.json'));
  return `node --input-type=module -e 'import { readFileSync } from "node:fs"; import { train } from "@mpfgvc/train"; await train({ ...JSON.parse(readFileSync(${cfg}, "utf8")), outDir: ${q(`${outDir}-again`)} });'`;
}

function reproduceSection(input: ModelCardInput): string[] {
  const cmd = input.reproduce ?? nodeCommand(input.config.outDir);
  return [
    '## Reproduce',
    '',
    '```sh',
    cmd,
    '```',
    '',
    '`config.json` is the configuration as the run resolved it (`checkpoint.json` records it too). The same seed gives the same data order, augmentation and initialisation.',
  ];
}

function filesSection(input: ModelCardInput): string[] {
  const files: [string, string][] = [];
  if (input.complete) files.push(['model.safetensors', 'the model after every stage: weights, configuration, class names, input normalisation']);
  if (input.best) files.push(['best.safetensors, best.json', 'the model at its best validation result, and where it came from']);
  if (input.stages.some((s) => s.stage === 1) && input.config.model.objective !== 'vision') files.push(['model-stage1.safetensors', 'the model after stage 1']);
  files.push(['checkpoint.json', 'the last checkpoint (`mpfgvc train --resume <this folder>` continues or lengthens the run)']);
  files.push(['metrics.jsonl', 'one row per step and evaluation']);
  for (const s of input.stages) files.push([`eval-stage${s.stage}.json, confusion-stage${s.stage}.csv, confusion-stage${s.stage}.svg`, `test evaluation at the end of stage ${s.stage}: per-class accuracy, confusion matrix (counts and picture)`]);
  files.push(['summary.json', 'status, time, per-stage results, skipped images']);
  return ['## Files', '', ...files.map(([f, what]) => `- ${f.split(', ').map((x) => `\`${x}\``).join(', ')}: ${what}`)];
}

function statusLine(input: ModelCardInput): string {
  const c = input.config;
  const last = input.stages[input.stages.length - 1];
  const planned = c.model.objective === 'vision' || c.stage2.epochs === 0 ? 1 : 2;
  const shipped = last ? `${last.eval.confusionHead} top-1 ${pct(last.eval.top1[last.eval.confusionHead])} on ${count(last.eval.count)} test images` : '';
  if (input.complete) return `Trained ${planned === 1 ? 'its one stage' : 'both stages'}${last ? `; ${shipped}` : ''}. The model is \`model.safetensors\`.`;
  if (!last) return 'Training: no stage has finished yet.';
  return `Stage ${last.stage} of ${planned} finished (${shipped}); stage ${last.stage + 1} was still to train when this card was written (\`summary.json\` says how the run ended).`;
}

/** The model card (Markdown) of a run. */
export function modelCard(input: ModelCardInput): string {
  const c = input.config;
  const title = `# MP-FGVC on ${mdText(datasetName(c))}: ${input.data.classes.length} ${mdText(input.data.superCategory)} classes`;
  const sections = [
    [MODEL_CARD_MARK, title, '', statusLine(input)],
    resultsSection(input),
    worstSection(input),
    curvesSection(input),
    dataSection(input),
    modelSection(input),
    trainingSection(input),
    reproduceSection(input),
    filesSection(input),
  ].filter((s) => s.length > 0);
  return `${sections.map((s) => s.join('\n')).join('\n\n')}\n`;
}

/** Whether `text` is a model card (and not a README.md of someone's own). */
export function isModelCard(text: string): boolean {
  return text.startsWith(MODEL_CARD_MARK);
}

/** Whether the file at `path` is a model card this package wrote (only a regular file is opened: a pipe would block). */
export function isModelCardFile(path: string): boolean {
  try {
    if (!lstatSync(path).isFile()) return false;
    const head = Buffer.alloc(Buffer.byteLength(MODEL_CARD_MARK));
    const fd = openSync(path, 'r');
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    return isModelCard(head.toString('utf8'));
  } catch {
    return false;
  }
}

/**
 * Writes README.md into the run folder (atomically), showing the pictures present there: the
 * curves (curves.png, else curves.svg) and the last stage's confusion matrix.
 */
export function writeModelCard(dir: string, input: Omit<ModelCardInput, 'pictures'>): string {
  const present = (f: string) => (existsSync(join(dir, f)) ? f : undefined);
  const last = input.stages[input.stages.length - 1];
  const curves = present('curves.png') ?? present('curves.svg');
  const confusion = last ? present(`confusion-stage${last.stage}.svg`) : undefined;
  const path = join(dir, MODEL_CARD_FILE);
  writeFileAtomic(path, modelCard({ ...input, pictures: { ...(curves ? { curves } : {}), ...(confusion ? { confusion } : {}) } }));
  return path;
}
