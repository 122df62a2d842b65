// Loading what the commands run: MP-FGVC checkpoints, images prepared as evaluation sees them
// (resize, centre crop, normalise), and errors turned into one line with a meaningful exit code.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Device, requestDevice } from '@mpfgvc/kernels';
import { MPFGVC, WeightsError } from '@mpfgvc/model';
import {
  CHECKPOINT_FILE,
  CheckpointError,
  type InputNormalization,
  MAX_IMAGE_BYTES,
  type Rgb,
  type TrainConfig,
  type TrainConfigInput,
  centerCropPlan,
  decodeRgb,
  insideFolder,
  normalizationStats,
  normalizeInto,
  readCheckpointRecord,
  readRegularFile,
  readRegularFileAsync,
  readRegularText,
  realFolder,
  resolveConfig,
  recordedConfig,
} from '@mpfgvc/train';
import sharp from 'sharp';
import { CliError, ExitCode } from '../errors.js';
import { deviceOptions } from './device-options.js';

export type DeviceFlags = Parameters<typeof deviceOptions>[0];

export async function openDevice(opts: DeviceFlags): Promise<Device> {
  return requestDevice(deviceOptions(opts));
}

/**
 * A checkpoint file, or a run folder: the model file its checkpoint.json names (in the folder or
 * its checkpoints/), with the run's effective configuration, both checked: the record against its
 * schema (the model's name must be the one its position implies, inside the folder), the
 * configuration as a run's.
 */
export function resolveCheckpoint(path: string): { file: string; runConfig?: TrainConfig } {
  if (!existsSync(path)) throw new CliError(`checkpoint ${path}: no such file or folder`, ExitCode.usage);
  if (!statSync(path).isDirectory()) return { file: path };
  for (const dir of [path, join(path, 'checkpoints')]) {
    if (!existsSync(join(dir, CHECKPOINT_FILE))) continue;
    const record = readCheckpointRecord(dir);
    const where = join(dir, CHECKPOINT_FILE);
    let runConfig: TrainConfig;
    try {
      runConfig = resolveConfig(recordedConfig(record.config), `${where}: config`);
    } catch (e) {
      throw new CheckpointError((e as Error).message);
    }
    const file = join(dir, record.model);
    insideFolder(realFolder(dir), file, `${where} names`);
    return { file, runConfig };
  }
  const files = readdirSync(path).filter((f) => f.endsWith('.safetensors') && !f.endsWith('.optim.safetensors'));
  if (files.length === 1) return { file: join(path, files[0]!) };
  throw new CliError(`checkpoint ${path}: a folder without checkpoint.json${files.length ? ` and with several *.safetensors files` : ' or *.safetensors file'}`, ExitCode.usage);
}

export interface LoadedModel {
  model: MPFGVC;
  path: string;
  /** Display names, by label, when the checkpoint carries them. */
  classes?: string[];
  /** The normalisation the run trained with, when the checkpoint is a run's. */
  normalization?: InputNormalization;
}

export function loadModel(dev: Device, path: string): LoadedModel {
  const { file, runConfig } = resolveCheckpoint(path);
  if (!existsSync(file)) throw new CliError(`checkpoint ${file}: no such file`);
  const bytes = readRegularFile(file, { what: 'checkpoint' });
  try {
    const model = MPFGVC.load(dev, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
    // What the file says first; files written before it carried names and statistics: the run folder's.
    const classes = model.info.classes ? { classes: model.info.classes } : classNames(file, model.config.numClasses);
    const norm = model.info.normalization ?? runConfig?.normalization;
    return { model, path: file, ...classes, ...(norm ? { normalization: norm } : {}) };
  } catch (e) {
    if (e instanceof WeightsError || e instanceof SyntaxError) throw new CliError(`checkpoint ${file}: ${e.message.replace(`${file}: `, '')}`);
    throw e;
  }
}

/** Class names from the run's evaluation files (eval-stage2.json, eval-stage1.json) beside the checkpoint. */
function classNames(file: string, count: number): { classes?: string[] } {
  for (const p of ['eval-stage2.json', 'eval-stage1.json'].map((f) => join(file, '..', f))) {
    if (!existsSync(p)) continue;
    let names: unknown;
    try {
      names = (JSON.parse(readRegularText(p, { what: 'evaluation', maxBytes: 256 * 1024 * 1024 })) as { classes?: unknown } | null)?.classes;
    } catch {
      // Names are a courtesy: an unreadable evaluation file leaves the classes numbered.
      continue;
    }
    if (Array.isArray(names) && names.length === count && names.every((n) => typeof n === 'string')) return { classes: names };
  }
  return {};
}

export type NormalizationName = 'imagenet' | 'clip';

export function normalization(n: InputNormalization): { mean: Rgb; std: Rgb } {
  return normalizationStats(n);
}

export interface PreparedImage {
  /** The crop the network sees, (S, S, 3) 8-bit RGB. */
  rgb: Uint8Array;
  /** (3, S, S) normalised. */
  chw: Float32Array;
}

/**
 * Evaluation preprocessing: the shorter side resized to floor(S / cropRatio), a centred S×S
 * crop, normalised (as the training pipeline's evaluation transform).
 */
export async function prepareEvalImage(path: string, size: number, norm: { mean: Rgb; std: Rgb }, cropRatio = 0.875, interpolation: 'bilinear' | 'bicubic' = 'bilinear'): Promise<PreparedImage> {
  if (!existsSync(path)) throw new CliError(`image ${path}: no such file`, ExitCode.usage);
  let img;
  try {
    img = await decodeRgb(await readRegularFileAsync(path, { what: 'image', maxBytes: MAX_IMAGE_BYTES }));
  } catch (e) {
    throw new CliError(`image ${path}: cannot read it (${(e as Error).message.split('\n')[0]})`);
  }
  const plan = centerCropPlan(img.width, img.height, size, cropRatio);
  const pixels = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(plan.resizeWidth, plan.resizeHeight, { fit: 'fill', kernel: interpolation === 'bicubic' ? 'cubic' : 'linear' })
    .extract(plan.crop)
    .raw()
    .toBuffer();
  const rgb = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.length);
  const chw = new Float32Array(3 * size * size);
  normalizeInto(rgb, size, false, norm.mean, norm.std, chw, 0);
  return { rgb, chw };
}

/** Softmax of one row of logits (float64). */
export function softmaxRow(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const e = Array.from(logits, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export function topK(probs: readonly number[], k: number): { index: number; p: number }[] {
  return probs
    .map((p, index) => ({ index, p }))
    .sort((a, b) => b.p - a.p || a.index - b.index)
    .slice(0, k);
}
