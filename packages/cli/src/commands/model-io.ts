// What the commands load: MP-FGVC checkpoints as classifiers (the library's loadClassifier, with
// the flags' overrides), with errors turned into one line and a meaningful exit code.
import { existsSync, statSync } from 'node:fs';
import { InvalidArgumentError, Option } from 'commander';
import { type Device, requestDevice } from '@mpfgvc/kernels';
import { type Classifier, type InputNormalization, type NodeImage, type TrainConfig, loadClassifier, normalizationStats, parseNormalization, resolveModelFile } from '@mpfgvc/train';
import { CliError, ExitCode } from '../errors.js';
import { deviceOptions } from './device-options.js';

export type DeviceFlags = Parameters<typeof deviceOptions>[0];

export async function openDevice(opts: DeviceFlags): Promise<Device> {
  return requestDevice(deviceOptions(opts));
}

/** A checkpoint file or run folder's model file and the run's configuration; a missing path is a usage error. */
export function resolveCheckpoint(path: string): { file: string; runConfig?: TrainConfig } {
  if (!existsSync(path)) throw new CliError(`checkpoint ${path}: no such file or folder`, ExitCode.usage);
  if (statSync(path).isDirectory()) return resolveModelFile(path);
  return { file: path };
}

export interface ClassifierFlags {
  checkpoint: string;
  normalize?: InputNormalization;
  cropRatio?: number;
  batch?: number;
}

/** The model a command runs, on `dev`, with the flags' normalisation, crop and batch over the file's own. */
export async function openClassifier(dev: Device, flags: ClassifierFlags): Promise<Classifier<NodeImage>> {
  resolveCheckpoint(flags.checkpoint);
  return loadClassifier(flags.checkpoint, {
    device: dev,
    ...(flags.normalize ? { normalization: normalizationStats(flags.normalize) } : {}),
    ...(flags.cropRatio ? { cropRatio: flags.cropRatio } : {}),
    ...(flags.batch ? { batch: flags.batch } : {}),
  });
}

/** `--normalize imagenet|clip|inception|m,m,m/s,s,s`, parsed (commander names the flag of a bad value). */
export function normalizeOption(defaults: string): Option {
  return new Option('--normalize <stats>', `input normalisation: imagenet, clip, inception (0.5/0.5) or mean,mean,mean/std,std,std (default: ${defaults})`).argParser((v: string) => {
    try {
      return parseNormalization(v);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  });
}
