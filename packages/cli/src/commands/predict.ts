import { Command } from 'commander';
import type { Head } from '@mpfgvc/model';
import { type Classification, type Classifier, ImageInputError, type InputNormalization, type NodeImage } from '@mpfgvc/train';
import { CliError, ExitCode, printable } from '../errors.js';
import { withDeviceOptions } from './device-options.js';
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
  image: string;
  error: string;
  code: number;
}

/**
 * Every head's probabilities (and top `topK`) for each image file that can be read; an image
 * that cannot be read is reported on stderr (one line) and left out.
 */
export async function runImages(classifier: Classifier<NodeImage>, paths: readonly string[], topK = 5): Promise<{ runs: ImageRun[]; failed: ImageFailure[] }> {
  const crops: { rgb: Uint8Array; chw: Float32Array }[] = [];
  const read: string[] = [];
  const failed: ImageFailure[] = [];
  for (const p of paths) {
    try {
      crops.push(await classifier.crop(p));
      read.push(p);
    } catch (e) {
      if (!(e instanceof ImageInputError)) throw e;
      failed.push({ image: p, error: e.message, code: e.missing ? ExitCode.usage : ExitCode.failure });
      process.stderr.write(`mpfgvc: ${printable(e.message)}\n`);
    }
  }
  const results = await classifier.classifyCrops(crops, topK);
  return { runs: results.map((r, i) => ({ ...r, path: read[i]!, crop: crops[i]!.rgb })), failed };
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
    .option('--crop-ratio <r>', "evaluation crop: shorter side resized to size / r, then centre-cropped (default: the model file's, else 0.875)", floatArg(0.01, 1))
    .option('--batch <n>', 'images per forward pass', intArg(1, 4096), 8);
}

interface PredictOptions extends PredictFlags {
  top: number;
  json?: boolean;
}

export function predictCommand(): Command {
  return withPredictFlags(new Command('predict'))
    .description('top-k classes with probabilities for each image, per head (vision, text, VLFM) and their ensemble')
    .argument('<images...>', 'image files')
    .option('--top <k>', 'classes to list per head', intArg(1, 1_000_000), 5)
    .option('--json', 'print one JSON object')
    .action(async (paths: string[], _opts: unknown, cmd: Command) => {
      const o = resolveOptions<PredictOptions>(cmd);
      if (!o.json) printConfig('predict', effectiveConfig(cmd));
      const dev = await openDevice(o);
      try {
        const classifier = await openClassifier(dev, o);
        const { runs, failed } = await runImages(classifier, paths, o.top);
        const results = runs.map((r) => ({ image: r.path, ...r.heads, ...(r.selected ? { selected: r.selected } : {}) }));
        if (o.json) process.stdout.write(`${JSON.stringify({ checkpoint: classifier.source, results, ...(failed.length ? { errors: failed.map(({ image, error }) => ({ image, error })) } : {}) })}\n`);
        else {
          for (const r of runs) {
            process.stdout.write(`\n${printable(r.path)}\n`);
            for (const h of classifier.heads) {
              const list = r.heads[h as Head]!.map((c) => `${printable(c.name)} ${(c.p * 100).toFixed(1)}%`).join(', ');
              process.stdout.write(`  ${h.padEnd(9)} ${list}\n`);
            }
          }
        }
        const err = imageFailures(failed, paths.length);
        if (err) throw err;
      } finally {
        dev.destroy();
      }
    });
}
