import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { MODEL_DEFAULTS, MODEL_PRESETS, OBJECTIVES, type Objective, PROMPT_MODES, type PromptMode } from '@mpfgvc/model';
import {
  CHECKPOINT_FILE,
  CheckpointError,
  FOLDER_DATA_DEFAULTS,
  type InputNormalization,
  OPTIMIZERS,
  SYNTH_DATA_DEFAULTS,
  type StageConfig,
  type StepRow,
  TRAIN_DEFAULTS,
  type TrainConfigInput,
  type TrainHooks,
  type TrainResult,
  type ResumeInput,
  type RunLock,
  TrainingInterrupted,
  birdClasses,
  demoConfig,
  readCheckpointRecord,
  readRegularText,
  resolveConfig,
  stageDefaults,
  train,
  wordPrompts,
  writeFileAtomic,
  recordedConfig,
} from '@mpfgvc/train';
import { CliError, ExitCode, printable } from '../errors.js';
import { Progress } from '../progress.js';
import { type DataFlags, dataConfig, withDataFlags } from './data-flags.js';
import { withDeviceOptions } from './device-options.js';
import { type DeviceFlags, normalizeOption, openDevice } from './model-io.js';
import { effectiveConfig, floatArg, intArg, printConfig, resolveOptions, withConfig } from './options.js';
import { interrupted, reproduceCommand, stopOnSignals, takeRunFolder } from './run-folder.js';

type ModelInput = TrainConfigInput['model'];

interface TrainFlags extends DataFlags, DeviceFlags {
  out?: string;
  resume?: string;
  model: string;
  imageSize?: number;
  selectK?: number;
  promptLength?: number;
  prompts?: PromptMode;
  promptTemplate?: string;
  objective?: Objective;
  tokenizer?: string;
  vision?: string;
  text?: string;
  normalize?: InputNormalization;
  seed: number;
  stage1Epochs?: number;
  stage1Batch?: number;
  stage1Lr?: number;
  stage1Optimizer?: StageConfig['optimizer'];
  stage2Epochs?: number;
  stage2Batch?: number;
  stage2Lr?: number;
  stage2Optimizer?: StageConfig['optimizer'];
  accumulate?: number;
  warmupEpochs?: number;
  weightDecay?: number;
  labelSmoothing?: number;
  clipNorm?: number;
  checkpointEvery: number;
  checkpointEpochs: number;
  checkpointMinutes: number;
  overwrite?: boolean;
  evalEvery: number;
  evalBatch: number;
  strict?: boolean;
  maxSkipped?: number;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

/** A default as the help shows it: 1e-3 rather than 0.001. */
function shown(x: number): string {
  const e = x.toExponential();
  return e.length < String(x).length ? e : String(x);
}

function stageFlags(cmd: Command, n: 1 | 2): Command {
  const d = stageDefaults(n);
  return cmd
    .option(`--stage${n}-epochs <n>`, `stage ${n} epochs (default ${d.epochs})`, intArg(0, 100_000))
    .option(`--stage${n}-batch <n>`, `stage ${n} batch size (default ${d.batchSize})`, intArg(1, 65_536))
    .option(`--stage${n}-lr <lr>`, `stage ${n} peak learning rate, cosine schedule (default ${shown(d.lr)})`, floatArg(0, 10))
    .addOption(new Option(`--stage${n}-optimizer <name>`, `stage ${n} optimiser (default ${d.optimizer})`).choices(OPTIMIZERS));
}

export function withTrainFlags(cmd: Command): Command {
  withDeviceOptions(withDataFlags(withConfig(cmd)))
    .option('--out <dir>', 'run folder: config.json, metrics.jsonl, checkpoints, evaluations, model.safetensors (with --resume: continue into this new folder, a branch of the run)', 'mpfgvc-run')
    .option('--resume <dir>', "continue the run in <dir> from its last checkpoint, with the run's recorded configuration (--stage1-epochs / --stage2-epochs may lengthen it)")
    .option('--overwrite', '--out may hold an earlier run: remove its files and start again')
    .option('--model <preset|file.json>', `architecture: ${Object.keys(MODEL_PRESETS).join(', ')}, or a JSON file of the model configuration`, 'demo')
    .option('--image-size <px>', 'input side (the position embeddings follow)', intArg(8, 4096))
    .option('--select-k <k>', "SsVP's K (0 turns SsVP off)", intArg(0, 100_000))
    .option('--prompt-length <j>', "DaTP's learnable tokens per class", intArg(1, 64))
    .addOption(
      new Option('--prompts <mode>', `datp: learned DaTP tokens; fixed: each class's hand-crafted prompt through the frozen text encoder, nothing on the text side trains (the w/o DaTP ablation) (default ${MODEL_DEFAULTS.prompts})`).choices(PROMPT_MODES),
    )
    .option('--prompt-template <text>', `fixed prompts: {class} and {superCategory} are filled in (default '${TRAIN_DEFAULTS.promptTemplate}')`)
    .addOption(
      new Option('--objective <name>', `mpfgvc: L_v + L_i2t, then VLFM; vision: the ViT-only baseline, L_v alone, no stage 2, evaluated on the vision head (default ${MODEL_DEFAULTS.objective})`).choices(OBJECTIVES),
    )
    .option('--tokenizer <file>', "a CLIP tokenizer.json for the super-category's tokens (needed by the vit-b16 preset; default: --text's tokenizer.json)")
    .option('--vision <dir>', 'start the image encoder from a checkpoint folder (timm, HF ViT such as vit-base-patch16-224-in21k, or HF CLIP); its shapes replace the preset\'s')
    .option('--text <dir>', "start the text tower from a Hugging Face CLIP checkpoint folder; its shapes replace the preset's")
    .addOption(normalizeOption("the --vision checkpoint's mean/std, else imagenet; recorded in the model file"))
    .option('--seed <n>', 'seeds initialisation, data order, augmentation and the held-out validation images', intArg(0, 0xffffffff), TRAIN_DEFAULTS.seed)
    .option('--val-fraction <f>', 'datasets on disk: the share of each class\'s training images held out for validation (evaluations during training, best.safetensors); 0 trains on all of them, as the paper does', floatArg(0, 0.5), FOLDER_DATA_DEFAULTS.valFraction)
    .option('--val-per-class <n>', 'synthetic birds: validation images per class, generated apart from train and test (0: none)', intArg(0, 100_000), SYNTH_DATA_DEFAULTS.valPerClass);
  stageFlags(cmd, 1);
  stageFlags(cmd, 2);
  const both = stageDefaults(1);
  const run = TRAIN_DEFAULTS;
  return cmd
    .option('--accumulate <n>', 'batches per optimiser step, both stages', intArg(1, 4096))
    .option('--warmup-epochs <e>', `linear warm-up, both stages (default ${shown(both.warmupEpochs)})`, floatArg(0, 1000))
    .option('--weight-decay <w>', `both stages (default ${shown(both.weightDecay)})`, floatArg(0, 10))
    .option('--label-smoothing <s>', `both stages (default ${shown(both.labelSmoothing)})`, floatArg(0, 0.999))
    .option('--clip-norm <c>', `global gradient-norm clipping, both stages; 0 off (default ${shown(both.clipNorm)})`, floatArg(0, 1e6))
    .option('--checkpoint-every <steps>', 'also checkpoint every N optimiser steps (0: off)', intArg(0, 1e9), run.checkpointEvery)
    .option('--checkpoint-epochs <n>', 'checkpoint at the end of every N-th epoch (0: off); stage ends always checkpoint', intArg(0, 1e9), run.checkpointEpochs)
    .option('--checkpoint-minutes <m>', 'checkpoint once this many minutes have passed since the last (0: off)', floatArg(0, 1e6), run.checkpointMinutes)
    .option('--eval-every <epochs>', 'evaluate every N epochs (0: at stage ends only)', intArg(0, 1e9), run.evalEvery)
    .option('--eval-batch <n>', 'evaluation batch size', intArg(1, 65_536), run.evalBatchSize)
    .option('--strict', 'an unreadable image stops the run instead of being skipped')
    .option('--max-skipped <fraction>', `stop once more than this fraction of the dataset is unreadable (default ${shown(run.maxSkippedFraction)})`, floatArg(0, 1))
    .option('--json', 'print one JSON object at the end; progress goes to stderr')
    .option('--quiet', 'no configuration, progress or log lines: only the summary at the end (and errors)')
    .option('--verbose', 'print the whole resolved configuration, not only what differs from the defaults');
}

function modelInput(o: TrainFlags): ModelInput {
  let model: ModelInput;
  const preset = MODEL_PRESETS[o.model];
  if (preset) model = structuredClone(preset);
  else if (o.model.endsWith('.json')) {
    if (!existsSync(o.model)) throw new CliError(`--model ${o.model}: no such file`, ExitCode.usage);
    try {
      model = JSON.parse(readRegularText(o.model, { what: 'model configuration', maxBytes: 16 * 1024 * 1024 })) as ModelInput;
    } catch (e) {
      throw new CliError(`--model ${o.model}: ${(e as Error).message}`, ExitCode.usage);
    }
  } else throw new CliError(`--model ${o.model}: not a preset (${Object.keys(MODEL_PRESETS).join(', ')}) or a .json file`, ExitCode.usage);
  if (o.imageSize !== undefined) model = { ...model, vision: { ...model.vision, imageSize: o.imageSize } };
  if (o.selectK !== undefined) model = { ...model, selectK: o.selectK };
  if (o.promptLength !== undefined) model = { ...model, promptLength: o.promptLength };
  if (o.prompts !== undefined) model = { ...model, prompts: o.prompts };
  if (o.objective !== undefined) model = { ...model, objective: o.objective };
  return model;
}

/** The loop's configuration from the flags. */
export function trainInput(o: TrainFlags): { input: TrainConfigInput; trainCount: number } {
  const { config: data, trainCount } = dataConfig(o);
  const model = modelInput(o);
  const stage = (n: 1 | 2): Partial<StageConfig> => {
    const s: Partial<StageConfig> = {};
    const f = o as unknown as Record<string, unknown>;
    const set = <K extends keyof StageConfig>(k: K, v: unknown) => {
      if (v !== undefined) s[k] = v as StageConfig[K];
    };
    set('epochs', f[`stage${n}Epochs`]);
    set('batchSize', f[`stage${n}Batch`]);
    set('lr', f[`stage${n}Lr`]);
    set('optimizer', f[`stage${n}Optimizer`]);
    set('accumulate', o.accumulate);
    set('warmupEpochs', o.warmupEpochs);
    set('weightDecay', o.weightDecay);
    set('labelSmoothing', o.labelSmoothing);
    set('clipNorm', o.clipNorm);
    return s;
  };
  const input: TrainConfigInput = {
    outDir: resolve(o.out ?? 'mpfgvc-run'),
    seed: o.seed,
    data,
    model,
    ...(o.normalize ? { normalization: o.normalize } : {}),
    stage1: stage(1),
    stage2: stage(2),
    checkpointEvery: o.checkpointEvery,
    checkpointEpochs: o.checkpointEpochs,
    checkpointMinutes: o.checkpointMinutes,
    evalEvery: o.evalEvery,
    evalBatchSize: o.evalBatch,
    strict: o.strict === true,
    ...(o.maxSkipped !== undefined ? { maxSkippedFraction: o.maxSkipped } : {}),
    ...(o.promptTemplate !== undefined ? { promptTemplate: o.promptTemplate } : {}),
  };
  for (const flag of ['vision', 'text'] as const) {
    const dir = o[flag];
    if (dir === undefined) continue;
    if (!existsSync(dir)) throw new CliError(`--${flag} ${dir}: no such folder`, ExitCode.usage);
    input.pretrained = { ...input.pretrained, [flag]: resolve(dir) };
  }
  const tokenizer = o.tokenizer ?? (o.text && existsSync(join(o.text, 'tokenizer.json')) ? join(o.text, 'tokenizer.json') : undefined);
  if (tokenizer) {
    if (!existsSync(tokenizer)) throw new CliError(`--tokenizer ${tokenizer}: no such file`, ExitCode.usage);
    input.tokenizer = tokenizer;
  } else if (o.model === 'demo' && model.prompts === 'fixed') {
    // Without a tokenizer the from-scratch text tower reads the prompts' own words.
    if (data.kind !== 'synth') throw new CliError('--prompts fixed with --model demo needs --tokenizer (a CLIP tokenizer.json), except on --data synth', ExitCode.usage);
    const words = wordPrompts(birdClasses(data.numClasses).map((c) => c.name), 'bird', o.promptTemplate ?? TRAIN_DEFAULTS.promptTemplate);
    const { vocabSize, contextLength } = model.text;
    input.model = { ...model, text: { ...model.text, vocabSize: Math.max(vocabSize, words.vocabulary.length), contextLength: Math.max(contextLength, words.contextLength) } };
    input.promptTokens = words.tokens;
  } else if (o.model === 'demo') {
    // The demo's text tower has a three-token vocabulary: super-category, SOT, EOT.
    input.promptTokens = demoConfig().promptTokens!;
  }
  return { input, trainCount };
}

/** The progress bar's stage while stage 2 embeds the training images. */
const CACHE = -2;

/** Progress bars per stage from the loop's step rows, and its log lines between them. */
export function progressHooks(resolved: ReturnType<typeof resolveConfig>, trainCount: number, stream: NodeJS.WriteStream): { hooks: TrainHooks; done: () => void } {
  const perEpochSteps = (sc: StageConfig) => Math.ceil(Math.floor(trainCount / sc.batchSize) / sc.accumulate);
  const stageSteps = [resolved.stage1.epochs * perEpochSteps(resolved.stage1), resolved.stage2.epochs * perEpochSteps(resolved.stage2)];
  let bar: Progress | undefined;
  let barStage = 0;
  let updated = false;
  const perStep = (stage: number) => {
    const sc = stage === 1 ? resolved.stage1 : resolved.stage2;
    return sc.batchSize * sc.accumulate;
  };
  const open = (stage: number, initialSteps: number) => {
    if (updated) bar?.finish();
    barStage = stage;
    updated = false;
    const sc = stage === 1 ? resolved.stage1 : resolved.stage2;
    bar = new Progress({ label: `stage ${stage}`, total: stageSteps[stage - 1]! * perStep(stage), perEpoch: perEpochSteps(sc) * perStep(stage), stream, initial: initialSteps * perStep(stage) });
  };
  const onStep = (row: StepRow) => {
    const stageStep = row.stage === 1 ? row.step : row.step - stageSteps[0]!;
    // A resumed stage starts mid-way: its rate counts from the first step this process reports.
    if (barStage !== row.stage || (!updated && stageStep > 1)) open(row.stage, stageStep > 1 ? stageStep : 0);
    updated = true;
    bar!.update(stageStep * perStep(row.stage), row.loss, row.lr);
  };
  const log = (line: string) => {
    const start = /^stage (\d): \d+ epochs/.exec(line);
    if (bar?.complete) {
      bar.finish();
      bar = undefined;
    }
    if (bar) bar.log(line);
    else stream.write(`${printable(line)}\n`);
    if (start) open(Number(start[1]), 0);
    const cache = /^stage 2: embedding the (\d+) training images/.exec(line);
    if (cache) {
      barStage = CACHE;
      updated = false;
      bar = new Progress({ label: 'stage 2 embedding', total: Number(cache[1]), stream, warmup: 0 });
    }
  };
  // Stage 2's embedding cache: its own phase, counted in images (it is long at 448 px).
  const onCache = (doneImages: number) => {
    if (barStage !== CACHE || !bar) return;
    updated = true;
    bar.update(doneImages);
  };
  return {
    hooks: { onStep, log, onCache },
    done: () => {
      bar?.finish();
      bar = undefined;
    },
  };
}

export function summarize(r: TrainResult) {
  return {
    outDir: r.outDir,
    model: r.model,
    checkpoint: r.checkpoint,
    metrics: r.metrics,
    summary: r.summary,
    steps: r.steps,
    seconds: Number(r.seconds.toFixed(2)),
    skippedImages: r.skipCount,
    stages: r.stages.map((s) => ({ stage: s.stage, steps: s.steps, seconds: Number(s.seconds.toFixed(2)), top1: s.eval.top1, top5: s.eval.top5, ...(s.val ? { val: { top1: s.val.top1, top5: s.val.top5 } } : {}), eval: s.evalJson })),
    ...(r.best ? { best: r.best } : {}),
  };
}

export function printSummary(r: TrainResult, write = (s: string) => process.stdout.write(s)): void {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  write('\n');
  for (const s of r.stages) {
    const heads = s.eval.heads.map((h) => `${h} ${pct(s.eval.top1[h]!)}`).join(', ');
    const val = s.val ? `; validation ${s.val.heads.map((h) => `${h} ${pct(s.val!.top1[h]!)}`).join(', ')}` : '';
    write(`stage ${s.stage}: ${s.steps} steps in ${s.seconds.toFixed(1)} s; test top-1 ${heads}${val}\n`);
  }
  write(`model       ${r.model}\n`);
  if (r.best) write(`best        ${r.best.model} (validation ${r.best.head} top-1 ${pct(r.best.top1)}, stage ${r.best.stage} epoch ${r.best.epoch})\n`);
  write(`checkpoint  ${r.checkpoint}\nmetrics     ${r.metrics}\nsummary     ${r.summary}\n`);
}

// Flags that shape a run; with --resume the run's recorded configuration applies instead, except
// for these (how to run it, where to, and longer stages).
const RESUME_KEEPS = new Set(['resume', 'json', 'quiet', 'verbose', 'config', 'backend', 'adapter', 'power', 'out', 'stage1Epochs', 'stage2Epochs']);

/** The resolved configuration of `train` with no flags, flattened (what a printed configuration is compared with). */
function defaultConfig(): Record<string, unknown> {
  const cmd = withTrainFlags(new Command('train')).exitOverride();
  cmd.parse([], { from: 'user' });
  return flatten(resolveConfig(trainInput(cmd.opts() as TrainFlags).input) as unknown as Record<string, unknown>);
}

/** The configuration as printed before a run: what differs from the defaults, or all of it. */
export function configToPrint(resolved: ReturnType<typeof resolveConfig>, verbose: boolean): Record<string, unknown> {
  const all = flatten(resolved as unknown as Record<string, unknown>);
  if (verbose) return all;
  const defaults = defaultConfig();
  return Object.fromEntries(Object.entries(all).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(defaults[k])));
}

const silent = { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;

export function trainCommand(): Command {
  return withTrainFlags(new Command('train'))
    .description('train MP-FGVC, both stages, into a run folder (or --resume one)')
    .action(async (_opts: unknown, cmd: Command) => {
      const o = resolveOptions<TrainFlags>(cmd);
      const stream = o.json ? process.stderr : process.stdout;
      const say = (line: string) => stream.write(`${printable(line)}\n`);
      let input: TrainConfigInput | ResumeInput;
      let resolved: ReturnType<typeof resolveConfig>;
      let trainCount: number;
      let lock: RunLock | undefined;
      let runDir: string;
      if (!cmd.options.some((x) => ['cli', 'config'].includes(cmd.getOptionValueSource(x.attributeName()) ?? ''))) {
        // A bare `train` would start a long run on defaults in ./mpfgvc-run: show what to give instead.
        cmd.outputHelp({ error: true });
        throw new CliError('train: say what to train on (--data, --data-root, ...) or --resume <dir>; the flags are listed above', ExitCode.usage);
      }
      if (o.resume) {
        const given = cmd.options.filter((x) => !RESUME_KEEPS.has(x.attributeName()) && ['cli', 'config'].includes(cmd.getOptionValueSource(x.attributeName()) ?? '')).map((x) => x.long!);
        if (given.length) throw new CliError(`--resume continues with the run's recorded configuration; drop ${given.join(', ')}`, ExitCode.usage);
        const record = join(o.resume, CHECKPOINT_FILE);
        if (!existsSync(record)) throw new CliError(`--resume ${o.resume}: no checkpoint.json there`, ExitCode.usage);
        const rec = readCheckpointRecord(o.resume);
        try {
          resolved = resolveConfig(recordedConfig(rec.config), `${record}: config`);
        } catch (e) {
          throw new CheckpointError((e as Error).message);
        }
        const epochs = { ...(o.stage1Epochs !== undefined ? { stage1: o.stage1Epochs } : {}), ...(o.stage2Epochs !== undefined ? { stage2: o.stage2Epochs } : {}) };
        const branch = cmd.getOptionValueSource('out') === 'cli' || cmd.getOptionValueSource('out') === 'config' ? resolve(o.out!) : undefined;
        resolved = { ...resolved, stage1: { ...resolved.stage1, epochs: epochs.stage1 ?? resolved.stage1.epochs }, stage2: { ...resolved.stage2, epochs: epochs.stage2 ?? resolved.stage2.epochs } };
        trainCount = dataConfig(flagsOfData(resolved.data, resolved.seed)).trainCount;
        input = { resume: o.resume, ...(Object.keys(epochs).length ? { epochs } : {}), ...(branch && branch !== resolve(o.resume) ? { outDir: branch } : {}) };
        runDir = input.outDir ?? o.resume;
      } else {
        const t = trainInput(o);
        resolved = resolveConfig(t.input);
        input = t.input;
        trainCount = t.trainCount;
        runDir = resolved.outDir;
        // Checked before the run folder exists: a run that cannot take one step leaves nothing behind.
        for (const [n, sc] of [[1, resolved.stage1], [2, resolved.stage2]] as const) {
          if (sc.epochs > 0 && sc.batchSize > trainCount) throw new CliError(`--stage${n}-batch ${sc.batchSize} exceeds the ${trainCount} training images`, ExitCode.usage);
        }
        lock = takeRunFolder(resolved.outDir, { command: 'train', overwrite: o.overwrite === true, say });
        try {
          writeFileAtomic(join(resolved.outDir, 'cli.json'), `${JSON.stringify(effectiveConfig(cmd), null, 1)}\n`);
        } catch (e) {
          lock.release();
          throw e;
        }
      }
      if (!o.json && !o.quiet) {
        const title = o.resume ? `resuming ${o.resume}` : 'train';
        printConfig(o.verbose ? title : `${title} (what differs from the defaults; --verbose prints all)`, configToPrint(resolved, o.verbose === true), (s) => stream.write(s));
      }
      const { hooks, done } = progressHooks(resolved, trainCount, o.quiet ? silent : stream);
      const stop = stopOnSignals(stream);
      // The folder trained into (a branch's, when --resume goes on elsewhere). A run started from
      // code has no cli.json to train again from: its card keeps the call on config.json.
      const reproduce = !o.resume || existsSync(join(o.resume, 'cli.json')) ? { reproduce: reproduceCommand('train', runDir) } : {};
      let result: TrainResult;
      try {
        const dev = await openDevice(o);
        try {
          result = await train(input, { ...hooks, device: dev, signal: stop.signal, ...reproduce, ...(lock ? { lock } : {}) });
        } finally {
          done();
          dev.destroy();
        }
        if ('resume' in input) recordResumeFlags(runDir, o);
      } catch (e) {
        if (e instanceof TrainingInterrupted) throw interrupted(e, runDir);
        throw e;
      } finally {
        stop.dispose();
        lock?.release();
      }
      if (o.json) process.stdout.write(`${JSON.stringify(summarize(result))}\n`);
      else printSummary(result);
    });
}

/** cli.json of a resumed run says what it now is: its folder and its (longer) stages. */
function recordResumeFlags(dir: string, o: TrainFlags): void {
  const path = join(dir, 'cli.json');
  if (!existsSync(path)) return;
  let flags: Record<string, unknown>;
  try {
    flags = JSON.parse(readRegularText(path, { what: 'run flags', maxBytes: 16 * 1024 * 1024 })) as Record<string, unknown>;
  } catch {
    return; // the run's own record (config.json, checkpoint.json) is what a resume reads
  }
  const next = { ...flags, out: dir, ...(o.stage1Epochs !== undefined ? { 'stage1-epochs': o.stage1Epochs } : {}), ...(o.stage2Epochs !== undefined ? { 'stage2-epochs': o.stage2Epochs } : {}) };
  if (JSON.stringify(next) !== JSON.stringify(flags)) writeFileAtomic(path, `${JSON.stringify(next, null, 1)}\n`);
}


/** Data flags equivalent to a resolved data configuration (to count a resumed run's images). */
function flagsOfData(d: ReturnType<typeof resolveConfig>['data'], seed: number): DataFlags {
  if (d.kind === 'synth') return { data: 'synth', workers: 0, classes: d.numClasses, perClass: d.trainPerClass, testPerClass: d.testPerClass, valPerClass: d.valPerClass, dataSeed: d.seed, fresh: d.fresh, seed };
  return { data: d.format, dataRoot: d.root, workers: d.workers, classes: 0, perClass: 0, testPerClass: 0, dataSeed: 0, valFraction: d.valFraction, seed, ...(d.superCategory ? { superCategory: d.superCategory } : {}) };
}

/** Nested configuration as dotted keys, one line each when printed. */
export function flatten(obj: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flatten(v as Record<string, unknown>, `${prefix}${k}.`));
    else out[prefix + k] = v;
  }
  return out;
}
