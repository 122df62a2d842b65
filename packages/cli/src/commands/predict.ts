import { Command } from 'commander';
import type { Head } from '@mpfgvc/model';
import { type Classification, type Classifier, EVAL_CROP_RATIO, ImageInputError, type InputNormalization, type NodeImage } from '@mpfgvc/train';
import { CliError, ExitCode, printable } from '../errors.js';
import { withDeviceOptions } from './device-options.js';
import { type InputItem, type Shard, expandInputs, withInputFlags } from './inputs.js';
import { type DeviceFlags, normalizeOption, openClassifier, openDevice } from './model-io.js';
import { effectiveConfig, floatArg, intArg, printConfig, resolveOptions, withConfig } from './options.js';

/** One image's classification with the crop the network saw. */
export interface ImageRun extends Classification {
  path: string;
  /** (S, S, 3) RGB. */
  crop: Uint8Array;
}

export interface PredictFlags extends DeviceFlags {
  checkpoint: string;
  normalize?: InputNormalization;
  cropRatio?: number;
  batch: number;
}

/** An image a command could not read: named on stderr as it is met, the others go on. */
export interface ImageFailure {
  index: number;
  image: string;
  error: string;
  code: number;
}

/**
 * Every head's probabilities (and top `topK`) for each image that can be read, a batch at a time
 * as they are done; an image that cannot be read is reported on stderr (one line) and to
 * `failed`, and left out.
 */
export async function* classifyImages(classifier: Classifier<NodeImage>, items: readonly InputItem[], topK: number, failed: ImageFailure[]): AsyncGenerator<ImageRun & { index: number }> {
  for (let b = 0; b < items.length; b += classifier.batch) {
    const crops: { rgb: Uint8Array; chw: Float32Array; name: string }[] = [];
    const read: InputItem[] = [];
    for (const item of items.slice(b, b + classifier.batch)) {
      try {
        crops.push({ ...(await classifier.crop(item.path)), name: item.path });
        read.push(item);
      } catch (e) {
        if (!(e instanceof ImageInputError)) throw e;
        failed.push({ index: item.index, image: item.path, error: e.message, code: e.missing ? ExitCode.usage : ExitCode.failure });
        process.stderr.write(`mpfgvc: ${printable(e.message)}\n`);
      }
    }
    const results = await classifier.classifyCrops(crops, topK);
    for (let i = 0; i < results.length; i++) yield { ...results[i]!, index: read[i]!.index, path: read[i]!.path, crop: crops[i]!.rgb };
  }
}

/**
 * The end of a command over many images: an error when any could not be read (each was named as
 * it was met; a summary line only when there were several images). Missing files alone are usage
 * errors (exit 2), anything else a failure (exit 1).
 */
export function imageFailures(failed: ImageFailure[], total: number): CliError | undefined {
  if (failed.length === 0) return undefined;
  const code = failed.every((f) => f.code === ExitCode.usage) ? ExitCode.usage : ExitCode.failure;
  // With one image, its own line already said it all.
  return new CliError(total === 1 ? '' : `${failed.length} of ${total} images could not be read (named above); the others were done`, code);
}

export function withPredictFlags(cmd: Command): Command {
  return withDeviceOptions(withConfig(cmd))
    .requiredOption('--checkpoint <path>', 'MP-FGVC checkpoint (.safetensors), or a run folder (its newest checkpoint)')
    .addOption(normalizeOption("the model file's, else clip for a CLIP vision tower, else imagenet"))
    .option('--crop-ratio <r>', `evaluation crop: shorter side resized to size / r, then centre-cropped (default: the model file's, else ${EVAL_CROP_RATIO})`, floatArg(0.01, 1))
    .option('--batch <n>', 'images per forward pass', intArg(1, 4096), 8);
}

interface PredictOptions extends PredictFlags {
  top: number;
  json?: boolean;
  jsonl?: boolean;
  list?: string;
  shard?: Shard;
}

export function predictCommand(): Command {
  return withInputFlags(withPredictFlags(new Command('predict')), 'the images')
    .description('top-k classes with probabilities for each image, per head (vision, text, VLFM) and their ensemble')
    .argument('[images...]', 'image files, folders (every image under them) or globs (quoted: "photos/**/*.jpg")')
    .option('--top <k>', 'classes to list per head', intArg(1, 1_000_000), 5)
    .option('--json', 'print one JSON object')
    .option('--jsonl', 'stream one JSON row per image ({index, image, <head>: top-k, selected}; {index, image, error} for one that cannot be read), as each batch is done')
    .action(async (args: string[], _opts: unknown, cmd: Command) => {
      const o = resolveOptions<PredictOptions>(cmd);
      if (o.json && o.jsonl) throw new CliError('give one of --json and --jsonl', ExitCode.usage);
      const { items, total } = expandInputs(args, { ...(o.list ? { list: o.list } : {}), ...(o.shard ? { shard: o.shard } : {}) });
      if (!o.json && !o.jsonl) printConfig('predict', effectiveConfig(cmd));
      const dev = await openDevice(o);
      try {
        const classifier = await openClassifier(dev, o);
        const failed: ImageFailure[] = [];
        const results = [];
        let shown = 0;
        const showFailures = () => {
          for (const f of failed.slice(shown)) process.stdout.write(`${JSON.stringify({ index: f.index, image: f.image, error: f.error })}\n`);
          shown = failed.length;
        };
        for await (const r of classifyImages(classifier, items, o.top, failed)) {
          const row = { image: r.path, ...r.heads, ...(r.selected ? { selected: r.selected } : {}) };
          if (o.jsonl) {
            showFailures();
            process.stdout.write(`${JSON.stringify({ index: r.index, ...row })}\n`);
          } else if (o.json) results.push(row);
          else {
            process.stdout.write(`\n${printable(r.path)}\n`);
            for (const h of classifier.heads) {
              const list = r.heads[h as Head]!.map((c) => `${printable(c.name)} ${(c.p * 100).toFixed(1)}%`).join(', ');
              process.stdout.write(`  ${h.padEnd(9)} ${list}\n`);
            }
          }
        }
        if (o.jsonl) showFailures();
        if (o.json) process.stdout.write(`${JSON.stringify({ checkpoint: classifier.source, results, ...(o.shard ? { shard: `${o.shard.index}/${o.shard.count}`, total } : {}), ...(failed.length ? { errors: failed.map(({ image, error }) => ({ image, error })) } : {}) })}\n`);
        const err = imageFailures(failed, items.length);
        if (err) throw err;
      } finally {
        dev.destroy();
      }
    });
}
