// The dataset flags shared by `train` and `eval`: the embedded synthetic birds (default) or a
// dataset on disk in one of the layouts the train package reads.
import { type Command, Option } from 'commander';
import { type DataConfig, DATASET_NAMES, type DatasetKind, FOLDER_DATA_DEFAULTS, MAX_BIRD_CLASSES, SYNTH_DATA_DEFAULTS, TRAIN_DEFAULTS, holdOut, openDataset } from '@mpfgvc/train';
import { CliError, ExitCode } from '../errors.js';
import { intArg } from './options.js';

export interface DataFlags {
  data: 'synth' | 'auto' | DatasetKind;
  dataRoot?: string;
  superCategory?: string;
  workers: number;
  classes: number;
  perClass: number;
  testPerClass: number;
  dataSeed: number;
  fresh?: boolean;
  /** train only: the validation split (a share of each class's training images, or generated birds per class). */
  valFraction?: number;
  valPerClass?: number;
  /** The run's seed (it chooses the held-out images). */
  seed?: number;
}

export const DATA_KINDS = ['synth', 'auto', ...(Object.keys(DATASET_NAMES) as DatasetKind[])];

export function withDataFlags(cmd: Command): Command {
  const synth = SYNTH_DATA_DEFAULTS;
  return cmd
    .addOption(new Option('--data <kind>', 'dataset: the embedded synthetic birds, or a layout on disk (auto detects it)').choices(DATA_KINDS).default('synth'))
    .option('--data-root <dir>', 'dataset folder (CUB_200_2011/, nabirds/, food-101/, Stanford Dogs, or train/ + val/ class folders)')
    .option('--super-category <name>', "the word DaTP appends to every prompt (default: the dataset's; required for imagefolder)")
    .option('--workers <n>', 'image worker threads for datasets on disk (0: main thread)', intArg(0, 64), FOLDER_DATA_DEFAULTS.workers)
    .option('--classes <n>', `synthetic birds: subcategories (2-${MAX_BIRD_CLASSES})`, intArg(2, MAX_BIRD_CLASSES), synth.numClasses)
    .option('--per-class <n>', 'synthetic birds: training images per class', intArg(1, 100_000), synth.trainPerClass)
    .option('--test-per-class <n>', 'synthetic birds: test images per class', intArg(1, 100_000), synth.testPerClass)
    .option('--data-seed <n>', 'synthetic birds: seed of the images', intArg(0, 0xffffffff), synth.seed)
    .option('--fresh', 'synthetic birds: every epoch after the first trains on newly generated images');
}

/** The loop's data configuration, with the dataset opened once to fail early with one line. */
export function dataConfig(o: DataFlags): { config: DataConfig; trainCount: number } {
  if (o.data === 'synth') {
    if (o.dataRoot) throw new CliError(`--data-root ${o.dataRoot} needs --data auto|${Object.keys(DATASET_NAMES).join('|')} (the synthetic birds are generated in memory)`, ExitCode.usage);
    const config: DataConfig = { kind: 'synth', numClasses: o.classes, trainPerClass: o.perClass, testPerClass: o.testPerClass, valPerClass: o.valPerClass ?? SYNTH_DATA_DEFAULTS.valPerClass, seed: o.dataSeed, fresh: o.fresh === true };
    return { config, trainCount: o.classes * o.perClass };
  }
  if (!o.dataRoot) throw new CliError(`--data ${o.data} needs --data-root <dir>`, ExitCode.usage);
  let trainCount: number;
  const valFraction = o.valFraction ?? FOLDER_DATA_DEFAULTS.valFraction;
  try {
    // What trains once the validation images are held out (the loop holds out the same ones).
    trainCount = holdOut(openDataset(o.data, o.dataRoot, o.superCategory === undefined ? {} : { superCategory: o.superCategory }).train, valFraction, o.seed ?? TRAIN_DEFAULTS.seed).train.length;
  } catch (e) {
    throw new CliError((e as Error).message, ExitCode.usage);
  }
  const config: Extract<DataConfig, { kind: 'folder' }> = { kind: 'folder', root: o.dataRoot, format: o.data, workers: o.workers, cropScale: [...FOLDER_DATA_DEFAULTS.cropScale], valFraction };
  if (o.superCategory !== undefined) config.superCategory = o.superCategory;
  return { config, trainCount };
}
