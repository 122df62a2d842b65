// Published checkpoints as the starting point of a run: a ViT folder (timm, Hugging Face
// `google/vit-base-patch16-224-in21k` style, or a Hugging Face CLIP model's vision tower) for the
// image encoder and a Hugging Face CLIP folder for the text tower. A folder holds one
// *.safetensors file (model.safetensors preferred) and optionally config.json,
// preprocessor_config.json and tokenizer.json, as the Hub lays them out.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readRegularFile, readRegularText } from './safe-files.js';
import {
  type ImagePreprocessing,
  type MPFGVC,
  type MPFGVCConfig,
  type Safetensors,
  WeightsError,
  clipTextWeights,
  detectViTFamily,
  parsePreprocessorConfig,
  parseSafetensors,
  textConfigFromCheckpoint,
  visualProjection,
  vitConfigFromCheckpoint,
  vitWeightSource,
} from '@mpfgvc/model';

/** JSON files beside weights (config.json, tokenizer.json: CLIP's is 3.6 MB) larger than this are refused. */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

export interface CheckpointFolder {
  dir: string;
  /** The weights file's path. */
  file: string;
  weights: Safetensors;
  /** A JSON file of the folder, parsed; undefined when absent. */
  json(name: string): unknown;
}

/** Opens a checkpoint folder; errors name the folder and what is wrong with it. */
export function openCheckpointFolder(dir: string): CheckpointFolder {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new WeightsError(`${dir}: no such folder`);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .sort();
  const name = files.includes('model.safetensors') ? 'model.safetensors' : files.length === 1 ? files[0] : undefined;
  if (!name) {
    throw new WeightsError(
      `${dir}: ${files.length === 0 ? 'no *.safetensors file' : `several *.safetensors files (${files.join(', ')}) and no model.safetensors; sharded checkpoints are not supported`}`,
    );
  }
  const json = (file: string): unknown => {
    const p = join(dir, file);
    if (!existsSync(p)) return undefined;
    let text: string;
    try {
      text = readRegularText(p, { what: 'checkpoint file', maxBytes: MAX_JSON_BYTES });
    } catch (e) {
      throw new WeightsError((e as Error).message);
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new WeightsError(`${p}: ${(e as Error).message}`);
    }
  };
  const file = join(dir, name);
  let bytes: Buffer;
  try {
    bytes = readRegularFile(file, { what: 'weights' });
  } catch (e) {
    throw new WeightsError((e as Error).message);
  }
  return { dir, file, weights: parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file), json };
}

/** An image-encoder checkpoint folder opened: its family, the ViT it holds and the preprocessing it was made with. */
export interface VisionFolder {
  folder: CheckpointFolder;
  family: ReturnType<typeof detectViTFamily>['family'];
  config: MPFGVCConfig['vision'];
  preprocessing: ImagePreprocessing;
}

/**
 * The one reader of a vision folder (train --vision and features --vision): the ViT's shapes from
 * its weights and config.json, at `imageSize` when given (position embeddings are resized), and the
 * preprocessing from preprocessor_config.json (HF) or config.json's pretrained_cfg (timm).
 */
export function openVisionFolder(dir: string | CheckpointFolder, imageSize?: number): VisionFolder {
  const folder = typeof dir === 'string' ? openCheckpointFolder(dir) : dir;
  const { family } = detectViTFamily(folder.weights);
  const config = vitConfigFromCheckpoint(folder.weights, folder.json('config.json'), imageSize ? { imageSize } : {});
  const preprocessing = parsePreprocessorConfig(folder.json('preprocessor_config.json') ?? folder.json('config.json') ?? {}, family, config.imageSize);
  return { folder, family, config, preprocessing };
}

export interface PretrainedFolders {
  /** Image-encoder checkpoint folder. */
  vision?: string;
  /** Hugging Face CLIP folder whose text tower (and tokenizer.json) the model uses. */
  text?: string;
}

export interface Pretrained {
  vision?: CheckpointFolder;
  text?: CheckpointFolder;
  /** The architecture with the towers' shapes taken from the checkpoints. */
  config: MPFGVCConfig;
  /** Image preprocessing (size, mean, std) that belongs to the vision checkpoint. */
  preprocessing?: ImagePreprocessing;
}

/**
 * Opens the folders and fits `base` to them: the towers' widths, depths and heads come from the
 * checkpoints; the input size, K, J and the heads stay `base`'s (position embeddings are resized
 * when the size differs). With a CLIP vision tower the joint width is CLIP's projection width.
 */
export function resolvePretrained(folders: PretrainedFolders, base: MPFGVCConfig): Pretrained {
  const out: Pretrained = { config: { ...base } };
  if (folders.vision) {
    const v = openVisionFolder(folders.vision, base.vision.imageSize);
    out.vision = v.folder;
    out.config.vision = v.config;
    out.preprocessing = v.preprocessing;
  }
  if (folders.text) {
    const f = openCheckpointFolder(folders.text);
    out.text = f;
    const spec = textConfigFromCheckpoint(f.weights, f.json('config.json'), join(f.dir, 'config.json'));
    out.config.text = spec.text;
    out.config.embedDim = spec.embedDim;
  }
  return out;
}

/**
 * Loads the checkpoints into a model built from `p.config`: the image encoder, CLIP's visual
 * projection when the vision folder has one of the right shape, the text tower and its projection.
 * The heads, DaTP prompts and VLFM keep their fresh initialisation.
 */
export function loadPretrained(model: MPFGVC, p: Pretrained): void {
  if (p.vision) {
    model.vision.load(vitWeightSource(p.vision.weights, model.vision.config), p.vision.file);
    const proj = visualProjection(p.vision.weights);
    const want = model.visualProjection.shape;
    if (proj && proj.shape[0] === want[0] && proj.shape[1] === want[1]) model.device.upload(model.visualProjection.buffer, model.visualProjection.offset * 4, proj.weight);
  }
  if (p.text) model.text.load(clipTextWeights(p.text.weights), p.text.file);
}
