// The embedded demo: MP-FGVC trained from scratch on the synthetic birds with the train package's
// demo configuration, then its training curves and a few SsVP overlays written into the run
// folder. With --ablation the paper's ablation variants are trained too, each in a subfolder, and
// tabulated: without SsVP, with fixed hand-crafted prompts instead of DaTP, and the ViT-only
// baseline; "w/o VLFM" is stage 1 of the full run.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import type { Device } from '@mpfgvc/kernels';
import {
  type EvalResult,
  type TrainConfigInput,
  type TrainResult,
  DEMO_EPOCHS,
  TrainingInterrupted,
  birdClasses,
  demoConfig,
  generateBird,
  loadClassifier,
  normalizationStats,
  resolveConfig,
  rgbToChw,
  train,
  wordPrompts,
  writeFileAtomic,
  writeModelCard,
  writing,
} from '@mpfgvc/train';
import { printable } from '../errors.js';
import { withDeviceOptions } from './device-options.js';
import { describeDevice } from './info.js';
import { writeOverlay } from './explain.js';
import { type DeviceFlags, openDevice } from './model-io.js';
import { effectiveConfig, intArg, printConfig, resolveOptions, withConfig } from './options.js';
import { plotMetrics } from './plot.js';
import { interrupted, reproduceCommand, stopOnSignals, takeRunFolder } from './run-folder.js';
import { flatten, printSummary, progressHooks, summarize } from './train.js';

interface DemoFlags extends DeviceFlags {
  out: string;
  classes: number;
  seed: number;
  epochs?: [number, number];
  explain: number;
  ablation?: boolean;
  overwrite?: boolean;
  json?: boolean;
}

function epochsArg(v: string): [number, number] {
  const m = /^(\d+),(\d+)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected stage-1 and stage-2 epochs as 'E1,E2', got '${v}'`);
  return [Number(m[1]), Number(m[2])];
}

/** One run of the demo into its own (locked) folder; `prepare` writes into the folder first. */
async function trainRun(dev: Device, input: TrainConfigInput, stream: NodeJS.WriteStream, o: DemoFlags, signal: AbortSignal, prepare?: () => void, reproduce?: string): Promise<TrainResult> {
  const resolved = resolveConfig(input);
  const d = resolved.data as Extract<typeof resolved.data, { kind: 'synth' }>;
  const lock = takeRunFolder(input.outDir, { command: 'demo', overwrite: o.overwrite === true, say: (l) => stream.write(`${printable(l)}\n`) });
  const { hooks, done } = progressHooks(resolved, d.numClasses * d.trainPerClass, stream);
  try {
    prepare?.();
    return await train(input, { ...hooks, device: dev, signal, lock, ...(reproduce ? { reproduce } : {}) });
  } catch (e) {
    if (e instanceof TrainingInterrupted) throw interrupted(e, input.outDir);
    throw e;
  } finally {
    done();
    lock.release();
  }
}

/** One test image of each of the first `count` classes, drawn with SsVP's selection and the prediction. */
async function overlays(dev: Device, result: TrainResult, count: number): Promise<string[]> {
  const cfg = result.config;
  const data = cfg.data as Extract<typeof cfg.data, { kind: 'synth' }>;
  const classes = birdClasses(data.numClasses);
  const classifier = await loadClassifier(result.model, { device: dev, classes: classes.map((c) => c.name), normalization: normalizationStats(cfg.normalization) });
  const S = classifier.imageSize;
  const picked = classes.slice(0, count);
  // The first test image of each class (test indices follow the training ones), drawn at the model's size.
  const crops = picked.map((cls) => {
    const { rgb } = generateBird(data.seed, cls, data.trainPerClass, S);
    return { rgb, chw: rgbToChw(rgb, S, classifier.normalization) };
  });
  const runs = await classifier.classifyCrops(crops, 1);
  const dir = join(result.outDir, 'explain');
  writing(dir, () => mkdirSync(dir, { recursive: true }));
  const files: string[] = [];
  for (let i = 0; i < runs.length; i++) {
    if (!runs[i]!.selected) break;
    const file = join(dir, `${picked[i]!.dirName}.png`);
    await writeOverlay(classifier, { ...runs[i]!, crop: crops[i]!.rgb }, file, picked[i]!.index);
    files.push(file);
  }
  classifier.dispose();
  return files;
}

/**
 * The ablation variants of the demo's run: each its own run folder under `outDir`. The fixed
 * prompts read the synthetic class names through a word vocabulary (the demo's text tower has no
 * tokenizer); ViT only is the plain baseline: no SsVP, L_v alone, no stage 2.
 */
function ablationInputs(input: TrainConfigInput, outDir: string): { name: string; dir: string; input: TrainConfigInput; note?: string }[] {
  const data = input.data as Extract<TrainConfigInput['data'], { kind: 'synth' }>;
  const words = wordPrompts(birdClasses(data.numClasses ?? 24).map((c) => c.name), 'bird');
  const { vocabSize, contextLength } = input.model.text;
  const text = { ...input.model.text, vocabSize: Math.max(vocabSize, words.vocabulary.length), contextLength: Math.max(contextLength, words.contextLength) };
  return [
    { name: 'w/o SsVP', dir: join(outDir, 'ablation-no-ssvp'), input: { ...input, outDir: join(outDir, 'ablation-no-ssvp'), model: { ...input.model, selectK: 0 } } },
    {
      name: 'w/o DaTP',
      dir: join(outDir, 'ablation-no-datp'),
      input: { ...input, outDir: join(outDir, 'ablation-no-datp'), model: { ...input.model, prompts: 'fixed', text }, promptTokens: words.tokens },
      note: "fixed prompts 'a photo of a {class}, a type of bird.'",
    },
    {
      name: 'ViT only',
      dir: join(outDir, 'ablation-vit-only'),
      input: { ...input, outDir: join(outDir, 'ablation-vit-only'), model: { ...input.model, objective: 'vision', selectK: 0 }, stage2: { ...input.stage2, epochs: 0 } },
      note: 'L_v alone, no SsVP, no stage 2',
    },
  ];
}

interface AblationRow {
  name: string;
  top1?: Partial<EvalResult['top1']>;
  note?: string;
}

function printAblation(rows: AblationRow[], write: (s: string) => void): void {
  const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(1)}`).padStart(9);
  write('\nablation: test top-1 (%) on the synthetic birds\n');
  write(`${'variant'.padEnd(28)}${['vision', 'text', 'vlfm', 'ensemble'].map((h) => h.padStart(9)).join('')}\n`);
  for (const r of rows) {
    if (r.top1) write(`${r.name.padEnd(28)}${pct(r.top1.vision)}${pct(r.top1.text)}${pct(r.top1.vlfm)}${pct(r.top1.ensemble)}${r.note ? `   ${r.note}` : ''}\n`);
    else write(`${r.name.padEnd(28)}   ${r.note}\n`);
  }
}

export function demoCommand(): Command {
  return withDeviceOptions(withConfig(new Command('demo')))
    .description('train MP-FGVC from scratch on the embedded synthetic birds, then write its curves and SsVP overlays')
    .option('--out <dir>', 'run folder', 'mpfgvc-demo')
    .option('--classes <n>', 'subcategories of synthetic birds', intArg(2, 162), 24)
    .option('--seed <n>', 'seed of the run', intArg(0, 0xffffffff), 0)
    .option('--epochs <e1,e2>', `stage-1 and stage-2 epochs (default: the demo's ${DEMO_EPOCHS.join(',')})`, epochsArg)
    .option('--explain <n>', 'SsVP overlays to draw (one test image of each of the first n classes)', intArg(0, 162), 4)
    .option('--ablation', 'also train the ablation variants (without SsVP, fixed prompts instead of DaTP, ViT only) and print a table of them')
    .option('--overwrite', '--out may hold an earlier demo: remove its runs and start again')
    .option('--json', 'print one JSON object at the end; progress goes to stderr')
    .action(async (_opts: unknown, cmd: Command) => {
      const o = resolveOptions<DemoFlags>(cmd);
      const stream = o.json ? process.stderr : process.stdout;
      const write = (s: string) => stream.write(s);
      const outDir = resolve(o.out);
      const input = demoConfig({ outDir, numClasses: o.classes, seed: o.seed, ...(o.epochs ? { epochs: o.epochs } : {}) });
      const dev = await openDevice(o);
      const stop = stopOnSignals(stream);
      try {
        const desc = describeDevice(dev);
        write(`MP-FGVC demo on ${desc.adapter}${desc.fallback ? ' (software)' : ''} (${desc.backend})\n`);
        if (!o.json) printConfig('demo', flatten(resolveConfig(input) as unknown as Record<string, unknown>), write);
        const result = await trainRun(dev, input, stream, o, stop.signal, () => writeFileAtomic(join(outDir, 'cli.json'), `${JSON.stringify(effectiveConfig(cmd), null, 1)}\n`), reproduceCommand('demo', outDir));
        if (!o.json) printSummary(result, write);
        const curves = await plotMetrics(result.metrics, result.outDir, 'demo: ');
        // The card again, now that the curves are there to show.
        if (result.card) writeModelCard(result.outDir, result.card);
        const pictures = await overlays(dev, result, Math.min(o.explain, o.classes));
        write(`curves      ${curves.png} (and .svg)\n`);
        for (const p of pictures) write(`SsVP        ${p}\n`);

        let ablation: AblationRow[] | undefined;
        if (o.ablation) {
          const variants: AblationRow[] = [];
          for (const v of ablationInputs(input, outDir)) {
            write(`\nablation: ${v.name} into ${v.dir}\n`);
            const run = await trainRun(dev, v.input, stream, o, stop.signal);
            const last = run.stages.at(-1);
            variants.push(last ? { name: v.name, top1: last.eval.top1, ...(v.note ? { note: v.note } : {}) } : { name: v.name, note: 'no epochs: nothing trained' });
          }
          const stageOne = result.stages.find((s) => s.stage === 1)?.eval.top1;
          ablation = [
            { name: 'MP-FGVC', top1: result.stages.at(-1)!.eval.top1 },
            variants[0]!,
            ...(stageOne ? [{ name: 'w/o VLFM (after stage 1)', top1: { vision: stageOne.vision!, text: stageOne.text! }, note: 'stage 1 of the full run' }] : []),
            ...variants.slice(1),
          ];
          printAblation(ablation, write);
        }
        if (o.json) process.stdout.write(`${JSON.stringify({ ...summarize(result), curves, explain: pictures, ...(ablation ? { ablation } : {}) })}\n`);
      } finally {
        stop.dispose();
        dev.destroy();
      }
    });
}
