// Embeddings from published checkpoints, with no MP-FGVC training: image embeddings from any ViT
// checkpoint folder the model package reads (timm, HF ViT, HF CLIP vision), text embeddings from an
// HF CLIP text checkpoint folder and its tokenizer.json.
import { join } from 'node:path';
import { Command } from 'commander';
import { type Device, Rng, type Tensor, linear, noGrad, tensor } from '@mpfgvc/kernels';
import {
  ClipTextEncoder,
  ClipTokenizer,
  VisionTransformer,
  WeightsError,
  clipTextWeights,
  detectViTFamily,
  parsePreprocessorConfig,
  serializeSafetensors,
  textConfigFromCheckpoint,
  visualProjection,
  vitConfigFromCheckpoint,
  vitWeightSource,
} from '@mpfgvc/model';
import { type CheckpointFolder, ImageInputError, nodeCrop, normalizeInto, openCheckpointFolder, writeFileAtomic } from '@mpfgvc/train';
import { CliError, ExitCode } from '../errors.js';
import { withDeviceOptions } from './device-options.js';
import { type DeviceFlags, openDevice } from './model-io.js';
import { effectiveConfig, intArg, printConfig, resolveOptions, withConfig } from './options.js';

interface FeaturesOptions extends DeviceFlags {
  vision?: string;
  text?: string;
  imageSize?: number;
  ssvpK: number;
  batch: number;
  out?: string;
  json?: boolean;
}

/** A checkpoint folder, with a missing or ambiguous one reported as a usage error naming the flag. */
function openFolder(dir: string, flag: string): CheckpointFolder {
  try {
    return openCheckpointFolder(dir);
  } catch (e) {
    throw new CliError(`${flag} ${(e as Error).message}`, ExitCode.usage);
  }
}

/** (N, D) rows of an embedding matrix with their inputs. */
interface Embeddings {
  kind: 'image' | 'text';
  checkpoint: string;
  inputs: string[];
  dim: number;
  data: Float32Array;
  /** HF CLIP's projected image embeddings (image_embeds), when the checkpoint has a visual projection. */
  projected?: { dim: number; data: Float32Array };
}

async function imageEmbeddings(dev: Device, o: FeaturesOptions, inputs: string[]): Promise<Embeddings> {
  const folder = openFolder(o.vision!, '--vision');
  const { family } = detectViTFamily(folder.weights);
  const cfg = vitConfigFromCheckpoint(folder.weights, folder.json('config.json'), o.imageSize ? { imageSize: o.imageSize } : {});
  const pre = parsePreprocessorConfig(folder.json('preprocessor_config.json') ?? folder.json('config.json'), family, cfg.imageSize);
  const vit = new VisionTransformer(dev, new Rng(0), cfg);
  vit.load(vitWeightSource(folder.weights, cfg), folder.weights.source);
  const proj = visualProjection(folder.weights);
  const projW = proj && tensor(dev, proj.weight, proj.shape);
  // Resize the shorter side to size·S/crop, then crop S: the checkpoint's own ratio at the model's input side.
  const ratio = pre.crop / pre.size;
  const crop = nodeCrop(family === 'hf-clip' ? 'bicubic' : 'bilinear');
  const readCrop = async (p: string, size: number, r: number) => {
    try {
      return await crop(p, size, r);
    } catch (e) {
      if (e instanceof ImageInputError) throw new CliError(e.message, e.missing ? ExitCode.usage : ExitCode.failure);
      throw e;
    }
  };
  const S = cfg.imageSize;
  const D = cfg.width;
  const data = new Float32Array(inputs.length * D);
  const projected = proj ? new Float32Array(inputs.length * proj.shape[0]) : undefined;
  for (let b = 0; b < inputs.length; b += o.batch) {
    const chunk = inputs.slice(b, b + o.batch);
    const x = new Float32Array(chunk.length * 3 * S * S);
    for (let i = 0; i < chunk.length; i++) normalizeInto(await readCrop(chunk[i]!, S, ratio), S, false, pre.mean, pre.std, x, i * 3 * S * S);
    const input = tensor(dev, x, [chunk.length, 3, S, S]);
    const { embedding, selected } = noGrad(() => vit.forward(input, { ssvpK: o.ssvpK > 0 ? o.ssvpK : null }));
    data.set(await embedding.read(), b * D);
    if (projected && projW) {
      const v: Tensor = noGrad(() => linear(embedding, projW));
      projected.set(await v.read(), b * proj!.shape[0]);
      v.dispose();
    }
    for (const t of [input, embedding, selected]) t?.dispose();
  }
  vit.dispose();
  projW?.dispose();
  return { kind: 'image', checkpoint: folder.dir, inputs, dim: D, data, ...(projected ? { projected: { dim: proj!.shape[0], data: projected } } : {}) };
}

async function textEmbeddings(dev: Device, o: FeaturesOptions, inputs: string[]): Promise<Embeddings> {
  const folder = openFolder(o.text!, '--text');
  const tokJson = folder.json('tokenizer.json');
  if (!tokJson) throw new CliError(`--text ${folder.dir}: no tokenizer.json (the CLIP tokenizer of the checkpoint)`, ExitCode.usage);
  const spec = textConfigFromCheckpoint(folder.weights, folder.json('config.json'), join(folder.dir, 'config.json'));
  const tokenizer = ClipTokenizer.fromJson(tokJson, { contextLength: spec.text.contextLength, source: join(folder.dir, 'tokenizer.json') });
  const enc = new ClipTextEncoder(dev, new Rng(0), spec.text, spec.embedDim);
  enc.load(clipTextWeights(folder.weights), folder.weights.source);
  const data = new Float32Array(inputs.length * spec.embedDim);
  for (let b = 0; b < inputs.length; b += o.batch) {
    const chunk = inputs.slice(b, b + o.batch);
    const t = noGrad(() => enc.forward(tokenizer.encodeBatch(chunk, { truncate: true })));
    data.set(await t.read(), b * spec.embedDim);
    t.dispose();
  }
  enc.dispose();
  return { kind: 'text', checkpoint: folder.dir, inputs, dim: spec.embedDim, data };
}

function rows(data: Float32Array, dim: number): number[][] {
  return Array.from({ length: data.length / dim }, (_, i) => Array.from(data.subarray(i * dim, (i + 1) * dim)));
}

export function featuresCommand(): Command {
  return withDeviceOptions(withConfig(new Command('features')))
    .description('image embeddings from a ViT checkpoint folder (--vision), or text embeddings from a CLIP text checkpoint folder (--text)')
    .argument('<inputs...>', 'image files (with --vision) or strings (with --text)')
    .option('--vision <dir>', 'image encoder folder: *.safetensors (timm, HF ViT or HF CLIP) + config.json + preprocessor_config.json')
    .option('--text <dir>', 'CLIP text folder: *.safetensors + config.json + tokenizer.json')
    .option('--image-size <px>', "input side (default: the checkpoint's; position embeddings are resized)", intArg(1, 4096))
    .option('--ssvp-k <k>', 'run SsVP keeping k patches for the last layer (0: the plain ViT)', intArg(0, 1_000_000), 0)
    .option('--batch <n>', 'inputs per forward pass', intArg(1, 4096), 8)
    .option('--out <file>', 'write the embeddings to file.json or file.safetensors (default: JSON on stdout)')
    .option('--json', 'print one JSON object (the default when --out is not given)')
    .action(async (inputs: string[], _opts: unknown, cmd: Command) => {
      const o = resolveOptions<FeaturesOptions>(cmd);
      if (Boolean(o.vision) === Boolean(o.text)) throw new CliError('features: give exactly one of --vision <dir> or --text <dir>', ExitCode.usage);
      if (o.out && !/\.(json|safetensors)$/.test(o.out)) throw new CliError(`--out ${o.out}: expected a .json or .safetensors file name`, ExitCode.usage);
      if (o.out && !o.json) printConfig('features', effectiveConfig(cmd));
      const dev = await openDevice(o);
      let e: Embeddings;
      try {
        e = o.vision ? await imageEmbeddings(dev, o, inputs) : await textEmbeddings(dev, o, inputs);
      } catch (err) {
        if (err instanceof WeightsError || (err as Error).name === 'TokenizerError') throw new CliError((err as Error).message);
        throw err;
      } finally {
        dev.destroy();
      }
      const json = { kind: e.kind, checkpoint: e.checkpoint, dim: e.dim, inputs: e.inputs, embeddings: rows(e.data, e.dim), ...(e.projected ? { projectedDim: e.projected.dim, projected: rows(e.projected.data, e.projected.dim) } : {}) };
      if (!o.out) {
        process.stdout.write(`${JSON.stringify(json)}\n`);
        return;
      }
      if (o.out.endsWith('.json')) writeFileAtomic(o.out, `${JSON.stringify(json)}\n`);
      else {
        const n = e.inputs.length;
        const entries: Parameters<typeof serializeSafetensors>[0] = { embeddings: { dtype: 'F32', shape: [n, e.dim], data: e.data } };
        if (e.projected) entries.projected = { dtype: 'F32', shape: [n, e.projected.dim], data: e.projected.data };
        writeFileAtomic(o.out, serializeSafetensors(entries, { kind: e.kind, checkpoint: e.checkpoint, inputs: JSON.stringify(e.inputs) }));
      }
      if (o.json) process.stdout.write(`${JSON.stringify({ out: o.out, kind: e.kind, count: e.inputs.length, dim: e.dim })}\n`);
      else process.stdout.write(`wrote ${e.inputs.length} ${e.kind} embeddings of width ${e.dim}${e.projected ? ` (and projected, width ${e.projected.dim})` : ''} to ${o.out}\n`);
    });
}
