import { mkdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { Command } from 'commander';
import { type Classification, type Classifier, writeFileAtomic } from '@mpfgvc/train';
import { CliError, ExitCode, printable } from '../errors.js';
import { patchOverlayPng } from '../render/overlay.js';
import { openClassifier, openDevice } from './model-io.js';
import { effectiveConfig, printConfig, resolveOptions } from './options.js';
import { type ImageFailure, type PredictFlags, classifyImages, imageFailures, withPredictFlags } from './predict.js';
import { expandInputs } from './inputs.js';

interface ExplainOptions extends PredictFlags {
  out?: string;
  json?: boolean;
}

/** Writes one overlay PNG of a classified crop (with the true class when known); returns the caption it drew. */
export async function writeOverlay(classifier: Classifier<unknown>, run: Classification & { crop: Uint8Array }, file: string, truth?: number): Promise<string> {
  const { imageSize, patchSize } = classifier.model.config.vision;
  const best = run.top[0]!;
  let caption = `${best.name} (${(best.p * 100).toFixed(1)}%), ${run.selected!.length} patches kept`;
  if (truth !== undefined) caption = `predicted: ${caption}\ntrue: ${classifier.classes[truth]}`;
  writeFileAtomic(file, await patchOverlayPng({ rgb: run.crop, size: imageSize, patchSize, selected: run.selected!, caption }));
  return caption;
}

export function explainCommand(): Command {
  return withPredictFlags(new Command('explain'))
    .description('draw the patches SsVP selects for the last layer over the (resized, cropped) image, as PNG')
    .argument('<images...>', 'image files, folders (every image under them) or globs')
    .option('--out <path>', 'PNG file (one image) or folder (default: <image name>.ssvp.png in the current folder)')
    .option('--json', 'print one JSON object')
    .action(async (paths: string[], _opts: unknown, cmd: Command) => {
      const o = resolveOptions<ExplainOptions>(cmd);
      const { items } = expandInputs(paths, {});
      if (o.out?.endsWith('.png') && items.length > 1) throw new CliError(`--out ${o.out} names one file, but ${items.length} images were given (pass a folder)`, ExitCode.usage);
      if (!o.json) printConfig('explain', effectiveConfig(cmd));
      const dev = await openDevice(o);
      try {
        const classifier = await openClassifier(dev, o);
        if (!(classifier.model.config.selectK > 0)) throw new CliError(`checkpoint ${classifier.source}: the model has no SsVP (selectK 0), nothing to draw`);
        const failed: ImageFailure[] = [];
        if (o.out && !o.out.endsWith('.png')) mkdirSync(o.out, { recursive: true });
        const results = [];
        for await (const run of classifyImages(classifier, items, 1, failed)) {
          const name = `${basename(run.path, extname(run.path))}.ssvp.png`;
          const file = o.out?.endsWith('.png') ? o.out : join(o.out ?? '.', name);
          const caption = await writeOverlay(classifier, run, file);
          results.push({ image: run.path, out: file, selected: run.selected!, prediction: caption });
          if (!o.json) process.stdout.write(`${printable(run.path)}: ${printable(caption)}; patches [${run.selected!.join(', ')}] -> ${file}\n`);
        }
        if (o.json) process.stdout.write(`${JSON.stringify({ checkpoint: classifier.source, results, ...(failed.length ? { errors: failed.map(({ image, error }) => ({ image, error })) } : {}) })}\n`);
        const err = imageFailures(failed, items.length);
        if (err) throw err;
      } finally {
        dev.destroy();
      }
    });
}
