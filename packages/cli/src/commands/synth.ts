import { resolve } from 'node:path';
import { Command } from 'commander';
import { MAX_BIRD_CLASSES, writeCubLayout } from '@mpfgvc/train';
import { CliError } from '../errors.js';
import { effectiveConfig, intArg, printConfig, resolveOptions, withConfig } from './options.js';

interface SynthOptions {
  out: string;
  classes: number;
  perClass: number;
  testPerClass: number;
  size: number;
  seed: number;
  overwrite?: boolean;
  json?: boolean;
}

export function synthCommand(): Command {
  return withConfig(new Command('synth'))
    .description('write the embedded synthetic-birds dataset to disk in the CUB-200-2011 layout')
    .requiredOption('--out <dir>', 'folder to create (CUB_200_2011-style: images.txt, images/, ...)')
    .option('--classes <n>', `number of subcategories (2-${MAX_BIRD_CLASSES})`, intArg(2, MAX_BIRD_CLASSES), 24)
    .option('--per-class <n>', 'training images per class', intArg(1, 1_000_000), 30)
    .option('--test-per-class <n>', 'test images per class', intArg(0, 1_000_000), 10)
    .option('--size <px>', 'image side in pixels (16-512)', intArg(16, 512), 64)
    .option('--seed <n>', 'seed of every image', intArg(0, 0xffffffff), 0)
    .option('--overwrite', 'replace the folder if it exists')
    .option('--json', 'print one JSON object')
    .action(async (_opts: unknown, cmd: Command) => {
      const o = resolveOptions<SynthOptions>(cmd);
      if (!o.json) printConfig('synth', effectiveConfig(cmd));
      const dir = resolve(o.out);
      let summary;
      try {
        summary = await writeCubLayout(dir, { numClasses: o.classes, trainPerClass: o.perClass, testPerClass: o.testPerClass, size: o.size, seed: o.seed, overwrite: o.overwrite });
      } catch (e) {
        throw new CliError((e as Error).message.replace(/^writeCubLayout: /, 'synth: ').replace('pass overwrite', 'pass --overwrite'));
      }
      if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else process.stdout.write(`wrote ${summary.images} images (${summary.train} train, ${summary.test} test, ${summary.classes} classes) to ${summary.dir}\n`);
    });
}
