// The classifier in Node: a model file or a run folder from disk, images as paths, encoded bytes
// (JPEG, PNG, WebP, …) or pixels in memory, cropped and resized through sharp as `mpfgvc predict`
// and the evaluation pipeline do.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Device, type DeviceOptions, requestDevice } from '@mpfgvc/kernels';
import sharp from 'sharp';
import { CHECKPOINT_FILE, CheckpointError, readCheckpointRecord } from '../checkpoint.js';
import { decodeRgb } from '../images/decode.js';
import { normalizationStats } from '../images/normalize.js';
import { MAX_IMAGE_BYTES } from '../images/preprocess.js';
import { centerCropPlan } from '../images/transforms.js';
import { type TrainConfig, recordedConfig, resolveConfig } from '../loop/config.js';
import { insideFolder, readRegularFile, readRegularFileAsync, readRegularText, realFolder } from '../safe-files.js';
import { Classifier, ClassifierError, type ClassifierOptions, type RawImage, rgbOf } from './classifier.js';

/** An image in Node: a file's path, a file's bytes, or decoded pixels. */
export type NodeImage = string | Uint8Array | RawImage;

/** An input that could not be read or decoded; `missing` when the path does not exist. */
export class ImageInputError extends ClassifierError {
  override name = 'ImageInputError';
  constructor(
    message: string,
    readonly missing = false,
  ) {
    super(message);
  }
}

export interface LoadClassifierOptions extends ClassifierOptions {
  /** The device to run on (default: one opened for the classifier, and destroyed by its dispose()). */
  device?: Device;
  /** How to pick an adapter when the classifier opens its own device. */
  deviceOptions?: DeviceOptions;
  /** Resampling of the evaluation resize (default bilinear; HF CLIP checkpoints were made with bicubic). */
  interpolation?: 'bilinear' | 'bicubic';
}

/**
 * A checkpoint file, or a run folder: the model file its checkpoint.json names (in the folder or
 * its checkpoints/), with the run's effective configuration, both checked: the record against its
 * schema (the model's name must be the one its position implies, inside the folder), the
 * configuration as a run's.
 */
export function resolveModelFile(path: string): { file: string; runConfig?: TrainConfig } {
  if (!existsSync(path)) throw new ClassifierError(`checkpoint ${path}: no such file or folder`);
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
  throw new ClassifierError(`checkpoint ${path}: a folder without checkpoint.json${files.length ? ' and with several *.safetensors files' : ' or *.safetensors file'}`);
}

/** Class names from the run's evaluation files (eval-stage2.json, eval-stage1.json) beside a model written before files carried them. */
function legacyClassNames(file: string, count: number): string[] | undefined {
  for (const p of ['eval-stage2.json', 'eval-stage1.json'].map((f) => join(file, '..', f))) {
    if (!existsSync(p)) continue;
    let names: unknown;
    try {
      names = (JSON.parse(readRegularText(p, { what: 'evaluation', maxBytes: 256 * 1024 * 1024 })) as { classes?: unknown } | null)?.classes;
    } catch {
      // Names are a courtesy: an unreadable evaluation file leaves the classes numbered.
      continue;
    }
    if (Array.isArray(names) && names.length === count && names.every((n) => typeof n === 'string')) return names;
  }
  return undefined;
}

/** The evaluation crop of any Node image, through sharp. */
export function nodeCrop(interpolation: 'bilinear' | 'bicubic' = 'bilinear') {
  return async (input: NodeImage, size: number, cropRatio: number): Promise<Uint8Array> => {
    let img: { data: Uint8Array; width: number; height: number };
    if (typeof input === 'string' || input instanceof Uint8Array) {
      const what = typeof input === 'string' ? `image ${input}` : `image (${input.byteLength} bytes)`;
      if (typeof input === 'string' && !existsSync(input)) throw new ImageInputError(`${what}: no such file`, true);
      try {
        img = await decodeRgb(typeof input === 'string' ? await readRegularFileAsync(input, { what: 'image', maxBytes: MAX_IMAGE_BYTES }) : input);
      } catch (e) {
        throw new ImageInputError(`${what}: cannot read it (${(e as Error).message.split('\n')[0]})`);
      }
    } else img = { data: rgbOf(input), width: input.width, height: input.height };
    const plan = centerCropPlan(img.width, img.height, size, cropRatio);
    const pixels = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
      .resize(plan.resizeWidth, plan.resizeHeight, { fit: 'fill', kernel: interpolation === 'bicubic' ? 'cubic' : 'linear' })
      .extract(plan.crop)
      .raw()
      .toBuffer();
    return new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.length);
  };
}

/**
 * A trained model, ready to classify: `source` is a model file (`model.safetensors`), a run folder
 * (its newest checkpoint) or the file's bytes. Class names, normalisation and crop come from the
 * file (a run folder's own settings for files written before they were recorded); `opts` override.
 */
export async function loadClassifier(source: string | Uint8Array, opts: LoadClassifierOptions = {}): Promise<Classifier<NodeImage>> {
  let bytes: Uint8Array;
  let name = 'model.safetensors';
  let runConfig: TrainConfig | undefined;
  if (typeof source === 'string') {
    const resolved = resolveModelFile(source);
    name = resolved.file;
    runConfig = resolved.runConfig;
    if (!existsSync(name)) throw new ClassifierError(`checkpoint ${name}: no such file`);
    const b = readRegularFile(name, { what: 'checkpoint' });
    bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } else bytes = source;
  const device = opts.device ?? (await requestDevice(opts.deviceOptions));
  const owned = !opts.device;
  try {
    const classifier = Classifier.fromBytes(device, bytes, name, nodeCrop(opts.interpolation), opts, owned ? () => device.destroy() : undefined);
    const { model } = classifier;
    // Files written before they carried names and statistics: the run folder's.
    const legacy: ClassifierOptions = {};
    if (!opts.classes && !model.info.classes && typeof source === 'string') {
      const names = legacyClassNames(name, model.config.numClasses);
      if (names) legacy.classes = names;
    }
    if (!opts.normalization && !model.info.normalization && runConfig) legacy.normalization = normalizationStats(runConfig.normalization);
    if (Object.keys(legacy).length === 0) return classifier;
    return new Classifier(model, nodeCrop(opts.interpolation), { ...opts, ...legacy }, { source: name, ...(owned ? { onDispose: () => device.destroy() } : {}) });
  } catch (e) {
    if (owned) device.destroy();
    throw e;
  }
}
