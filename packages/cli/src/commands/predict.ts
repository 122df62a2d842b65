import { Command, Option } from 'commander';
import { type Device, type Tensor, tensor } from '@mpfgvc/kernels';
import type { Head, MPFGVC } from '@mpfgvc/model';
import { CliError, ExitCode, printable } from '../errors.js';
import { withDeviceOptions } from './device-options.js';
import { type DeviceFlags, type LoadedModel, type NormalizationName, type PreparedImage, loadModel, normalization, openDevice, prepareEvalImage, softmaxRow, topK } from './model-io.js';
import { effectiveConfig, floatArg, intArg, printConfig, resolveOptions, withConfig } from './options.js';

export interface ImageRun {
  image: PreparedImage;
  /** Per head of the model (MPFGVC.heads): probabilities over the classes. */
  probs: Partial<Record<Head, number[]>>;
  /** SsVP's selected patch ids, when the model has SsVP. */
  selected?: number[];
}

export interface PredictFlags extends DeviceFlags {
  checkpoint: string;
  normalize?: NormalizationName;
  cropRatio: number;
  batch: number;
}

/** The normalisation a model was trained with: CLIP's for a CLIP vision tower (pre-norm), else ImageNet's. */
/** The probabilities of the prediction a model ships with: the ensemble's, or the vision head's of a ViT-only model. */
export function shipped(run: ImageRun): number[] {
  return (run.probs.ensemble ?? run.probs.vision)!;
}

export function defaultNormalization(model: MPFGVC): NormalizationName {
  return model.config.vision.preNorm ? 'clip' : 'imagenet';
}

/** An image a command could not read: named on stderr as it is met, the others go on. */
export interface ImageFailure {
  image: string;
  error: string;
  code: number;
}

/**
 * Every head's probabilities for each image file that can be read, `batch` images per forward
 * pass; an image that cannot be read is reported on stderr (one line) and left out.
 */
export async function runImages(dev: Device, loaded: LoadedModel, paths: string[], flags: Omit<PredictFlags, 'checkpoint'>): Promise<{ runs: (ImageRun & { path: string })[]; failed: ImageFailure[] }> {
  const { model } = loaded;
  const norm = normalization(flags.normalize ?? loaded.normalization ?? defaultNormalization(model));
  const images: PreparedImage[] = [];
  const read: string[] = [];
  const failed: ImageFailure[] = [];
  for (const p of paths) {
    try {
      images.push(await prepareEvalImage(p, model.config.vision.imageSize, norm, flags.cropRatio));
      read.push(p);
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      failed.push({ image: p, error: e.message, code: e.code });
      process.stderr.write(`mpfgvc: ${printable(e.message)}\n`);
    }
  }
  const runs = await runPrepared(dev, model, images, flags.batch);
  return { runs: runs.map((r, i) => ({ ...r, path: read[i]! })), failed };
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

/** Every head's probabilities for images already prepared at the model's input size. */
export async function runPrepared(dev: Device, model: MPFGVC, images: PreparedImage[], batch: number): Promise<ImageRun[]> {
  const S = model.config.vision.imageSize;
  const C = model.config.numClasses;
  const text = model.visionOnly ? undefined : model.textFeatures();
  const runs: ImageRun[] = [];
  try {
    for (let b = 0; b < images.length; b += batch) {
      const chunk = images.slice(b, b + batch);
      const input = new Float32Array(chunk.length * 3 * S * S);
      chunk.forEach((im, i) => input.set(im.chw, i * 3 * S * S));
      const x = tensor(dev, input, [chunk.length, 3, S, S]);
      const out = model.predict(x, text);
      const read = async (t: Tensor) => Array.from(await t.read());
      const values = await Promise.all(model.heads.map((h) => read(out[h]!)));
      const selected = out.selected ? await read(out.selected) : undefined;
      const K = out.selected?.shape[1] ?? 0;
      chunk.forEach((image, i) => {
        const row = (a: number[]) => a.slice(i * C, (i + 1) * C);
        // The ensemble is already a probability; the other heads are logits.
        const probs = Object.fromEntries(model.heads.map((h, k) => [h, h === 'ensemble' ? row(values[k]!) : softmaxRow(row(values[k]!))]));
        for (const [h, p] of Object.entries(probs)) {
          // A probability that is not a number is never printed as a result.
          if (p.some((x) => !Number.isFinite(x))) throw new CliError(`the ${h} head gave non-finite outputs for image ${runs.length + 1}; the model's weights or inputs are damaged`);
        }
        const run: ImageRun = { image, probs };
        if (selected) run.selected = selected.slice(i * K, (i + 1) * K);
        runs.push(run);
      });
      for (const t of [x, out.vision, out.text, out.vlfm, out.ensemble, out.selected]) t?.dispose();
    }
  } finally {
    text?.dispose();
  }
  return runs;
}

export function className(loaded: LoadedModel, index: number): string {
  return loaded.classes?.[index] ?? `class ${index}`;
}

export function withPredictFlags(cmd: Command): Command {
  return withDeviceOptions(withConfig(cmd))
    .requiredOption('--checkpoint <path>', 'MP-FGVC checkpoint (.safetensors), or a run folder (its newest checkpoint)')
    .addOption(new Option('--normalize <stats>', "input normalisation (default: the run's, else clip for a CLIP vision tower, else imagenet)").choices(['imagenet', 'clip']))
    .option('--crop-ratio <r>', 'evaluation crop: shorter side resized to size / r, then centre-cropped', floatArg(0.01, 1), 0.875)
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
        const loaded = loadModel(dev, o.checkpoint);
        const { runs, failed } = await runImages(dev, loaded, paths, o);
        const k = Math.min(o.top, loaded.model.config.numClasses);
        const results = runs.map((r) => {
          const heads = Object.fromEntries(loaded.model.heads.map((h) => [h, topK(r.probs[h]!, k).map(({ index, p }) => ({ class: index, name: className(loaded, index), p }))])) as Partial<Record<Head, { class: number; name: string; p: number }[]>>;
          return { image: r.path, ...heads, ...(r.selected ? { selected: r.selected } : {}) };
        });
        if (o.json) process.stdout.write(`${JSON.stringify({ checkpoint: loaded.path, results, ...(failed.length ? { errors: failed.map(({ image, error }) => ({ image, error })) } : {}) })}\n`);
        else {
          for (const r of results) {
            process.stdout.write(`\n${printable(r.image)}\n`);
            for (const h of loaded.model.heads) {
              const list = r[h]!.map((c) => `${printable(c.name)} ${(c.p * 100).toFixed(1)}%`).join(', ');
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
