import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command } from 'commander';
import { type DataBatch, type DataConfig, type InputNormalization, evaluate, openRunData, writeFileAtomic } from '@mpfgvc/train';
import { CliError, ExitCode } from '../errors.js';
import { Progress } from '../progress.js';
import { perClassLines, perClassTable, writeConfusionPictures } from '../render/per-class.js';
import { type DataFlags, dataConfig, withDataFlags } from './data-flags.js';
import { withDeviceOptions } from './device-options.js';
import { type DeviceFlags, normalizeOption, openClassifier, openDevice, resolveCheckpoint } from './model-io.js';
import { effectiveConfig, intArg, printConfig, resolveOptions, withConfig } from './options.js';

interface EvalFlags extends DataFlags, DeviceFlags {
  normalize?: InputNormalization;
  batch: number;
  strict?: boolean;
  out?: string;
  byClass?: boolean;
  json?: boolean;
}

async function* counted(batches: AsyncGenerator<DataBatch>, bar: Progress): AsyncGenerator<DataBatch> {
  let n = 0;
  for await (const b of batches) {
    n += b.size;
    bar.update(n);
    yield b;
  }
}

export function evalCommand(): Command {
  return withDeviceOptions(withDataFlags(withConfig(new Command('eval'))))
    .description("top-1/top-5 of every head on a dataset's test split (default: the run's own dataset)")
    .argument('<checkpoint>', 'a run folder (its last checkpoint) or an MP-FGVC .safetensors file')
    .addOption(normalizeOption("the model file's, else the run's, else clip for a CLIP vision tower, else imagenet"))
    .option('--batch <n>', 'images per forward pass', intArg(1, 65_536), 64)
    .option('--strict', 'an unreadable image fails the evaluation instead of being skipped')
    .option('--out <file.json>', 'write the full result (per-class accuracy, confusion matrix) as JSON, and the confusion matrix as <file>-confusion.svg and .png beside it')
    .option('--by-class', "also print every class: its test images, each head's top-1 and the class it is most often taken for; worst first by the shipped head (the ensemble, or vision for a ViT-only model), so the classes to look at come first")
    .option('--json', 'print one JSON object; progress goes to stderr')
    .action(async (checkpoint: string, _opts: unknown, cmd: Command) => {
      const o = resolveOptions<EvalFlags>(cmd);
      const { runConfig } = resolveCheckpoint(checkpoint);
      // The run's dataset unless data flags were given.
      const dataGiven = ['data', 'dataRoot', 'classes', 'perClass', 'testPerClass', 'dataSeed'].some((k) => ['cli', 'config'].includes(cmd.getOptionValueSource(k) ?? ''));
      let data: DataConfig;
      if (!dataGiven && runConfig?.data) data = runConfig.data as DataConfig;
      else data = dataConfig(o).config;
      if (data.kind === 'folder' && !existsSync(data.root)) throw new CliError(`dataset ${data.root}: no such folder`, ExitCode.usage);
      // Checked before the evaluation runs, not after it.
      if (o.out && !existsSync(dirname(resolve(o.out)))) throw new CliError(`--out ${o.out}: no such folder ${dirname(resolve(o.out))}`, ExitCode.usage);
      const stream = o.json ? process.stderr : process.stdout;
      const DATA_KEYS = ['data', 'data-root', 'super-category', 'workers', 'classes', 'per-class', 'test-per-class', 'data-seed', 'fresh'];
      const shown = Object.fromEntries(Object.entries(effectiveConfig(cmd)).filter(([k]) => dataGiven || !DATA_KEYS.includes(k)));
      if (!o.json) printConfig('eval', { checkpoint, ...shown, ...(dataGiven ? {} : { 'data (the run\'s)': JSON.stringify(data) }) });
      const dev = await openDevice(o);
      try {
        const loaded = await openClassifier(dev, { checkpoint, ...(o.normalize ? { normalize: o.normalize } : {}) });
        const { model, normalization } = loaded;
        let run;
        try {
          run = openRunData(data, { imageSize: model.config.vision.imageSize, normalization, seed: 0, strict: Boolean(o.strict) });
        } catch (e) {
          throw new CliError((e as Error).message, ExitCode.usage);
        }
        try {
          if (run.classes.length !== model.config.numClasses) {
            throw new CliError(`the dataset has ${run.classes.length} classes, the model ${model.config.numClasses}`, ExitCode.usage);
          }
          const bar = new Progress({ label: 'eval', total: run.testCount, stream });
          const result = await evaluate(model, counted(run.test(o.batch), bar));
          bar.finish();
          if (o.out) writeFileAtomic(o.out, `${JSON.stringify({ checkpoint: loaded.source, classes: run.classes, ...result }, null, 1)}\n`);
          const pictures = o.out ? await writeConfusionPictures(o.out, result, run.classes, `confusion matrix (${result.confusionHead} head), ${result.count} test images`) : undefined;
          const byClass = o.byClass ? perClassLines(result, run.classes) : undefined;
          if (o.json) process.stdout.write(`${JSON.stringify({ checkpoint: loaded.source, count: result.count, top1: result.top1, top5: result.top5, skipped: run.skipCount, ...(byClass ? { byClass } : {}), ...(pictures ? { confusion: pictures } : {}) })}\n`);
          else {
            const pct = (x: number) => `${(100 * x).toFixed(2)}%`.padStart(8);
            process.stdout.write(`\n${result.count} test images${run.skipCount ? ` (${run.skipCount} unreadable, skipped)` : ''}\nhead        top-1    top-5\n`);
            for (const h of result.heads) process.stdout.write(`${h.padEnd(10)}${pct(result.top1[h]!)} ${pct(result.top5[h]!)}\n`);
            if (byClass) process.stdout.write(perClassTable(byClass, result.heads, result.confusionHead));
            if (o.out) process.stdout.write(`wrote ${o.out}\n`);
            if (pictures) process.stdout.write(`wrote ${pictures.svg}\nwrote ${pictures.png}\n`);
          }
        } finally {
          await run.close();
        }
      } finally {
        dev.destroy();
      }
    });
}
