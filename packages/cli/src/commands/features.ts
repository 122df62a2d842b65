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
  serializeSafetensors,
  textConfigFromCheckpoint,
  visualProjection,
  vitWeightSource,
} from '@mpfgvc/model';
import { type CheckpointFolder, ImageInputError, nodeCrop, normalizeInto, openCheckpointFolder, openVisionFolder, writeFileAtomic } from '@mpfgvc/train';
import { CliError, ExitCode } from '../errors.js';
import { withDeviceOptions } from './device-options.js';
import { type InputItem, type Shard, expandInputs, withInputFlags } from './inputs.js';
import { JsonlWriter } from './jsonl.js';
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
  jsonl?: boolean;
  list?: string;
  shard?: Shard;
}

/** A checkpoint folder, with a missing or ambiguous one reported as a usage error naming the flag. */
function openFolder(dir: string, flag: string): CheckpointFolder {
  try {
    return openCheckpointFolder(dir);
  } catch (e) {
    throw new CliError(`${flag} ${(e as Error).message}`, ExitCode.usage);
  }
}

/** What a features job writes, batch by batch: rows of embeddings (and HF CLIP's projected ones) for consecutive items. */
interface EmbeddingSink {
  rows(items: readonly InputItem[], data: Float32Array, projected?: Float32Array): void;
}

interface Encoder {
  kind: 'image' | 'text';
  checkpoint: string;
  dim: number;
  projectedDim?: number;
  run(items: readonly InputItem[], batch: number, sink: EmbeddingSink): Promise<void>;
  dispose(): void;
}

function imageEncoder(dev: Device, o: FeaturesOptions): Encoder {
  const { folder, family, config: cfg, preprocessing: pre } = openVisionFolder(openFolder(o.vision!, '--vision'), o.imageSize);
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
  return {
    kind: 'image',
    checkpoint: folder.dir,
    dim: cfg.width,
    ...(proj ? { projectedDim: proj.shape[0] } : {}),
    async run(items, batch, sink) {
      for (let b = 0; b < items.length; b += batch) {
        const chunk = items.slice(b, b + batch);
        const x = new Float32Array(chunk.length * 3 * S * S);
        for (let i = 0; i < chunk.length; i++) normalizeInto(await readCrop(chunk[i]!.path, S, ratio), S, false, pre.mean, pre.std, x, i * 3 * S * S);
        const input = tensor(dev, x, [chunk.length, 3, S, S]);
        const { embedding, selected } = noGrad(() => vit.forward(input, { ssvpK: o.ssvpK > 0 ? o.ssvpK : null }));
        const data = (await embedding.read()) as Float32Array;
        let projected: Float32Array | undefined;
        if (projW) {
          const v: Tensor = noGrad(() => linear(embedding, projW));
          projected = (await v.read()) as Float32Array;
          v.dispose();
        }
        for (const t of [input, embedding, selected]) t?.dispose();
        sink.rows(chunk, data, projected);
      }
    },
    dispose() {
      vit.dispose();
      projW?.dispose();
    },
  };
}

function textEncoder(dev: Device, o: FeaturesOptions): Encoder {
  const folder = openFolder(o.text!, '--text');
  const tokJson = folder.json('tokenizer.json');
  if (!tokJson) throw new CliError(`--text ${folder.dir}: no tokenizer.json (the CLIP tokenizer of the checkpoint)`, ExitCode.usage);
  const spec = textConfigFromCheckpoint(folder.weights, folder.json('config.json'), join(folder.dir, 'config.json'));
  const tokenizer = ClipTokenizer.fromJson(tokJson, { contextLength: spec.text.contextLength, source: join(folder.dir, 'tokenizer.json') });
  const enc = new ClipTextEncoder(dev, new Rng(0), spec.text, spec.embedDim);
  enc.load(clipTextWeights(folder.weights), folder.weights.source);
  return {
    kind: 'text',
    checkpoint: folder.dir,
    dim: spec.embedDim,
    async run(items, batch, sink) {
      for (let b = 0; b < items.length; b += batch) {
        const chunk = items.slice(b, b + batch);
        const t = noGrad(() => enc.forward(tokenizer.encodeBatch(chunk.map((c) => c.path), { truncate: true })));
        const data = (await t.read()) as Float32Array;
        t.dispose();
        sink.rows(chunk, data);
      }
    },
    dispose() {
      enc.dispose();
    },
  };
}

function rows(data: Float32Array, dim: number): number[][] {
  return Array.from({ length: data.length / dim }, (_, i) => Array.from(data.subarray(i * dim, (i + 1) * dim)));
}

/** The embeddings of a job (or of one shard of it) as one file: JSON or safetensors. */
export interface EmbeddingTable {
  kind: 'image' | 'text';
  checkpoint: string;
  dim: number;
  inputs: string[];
  data: Float32Array;
  projected?: { dim: number; data: Float32Array };
  /** A shard's: its rows' indices in the whole job, the job's size and which shard. */
  shard?: { indices: number[]; total: number; of: string };
}

/** The bytes of a .json or .safetensors embeddings file; a whole job's carry no shard keys, so a merge gives the same bytes. */
export function embeddingFile(t: EmbeddingTable, format: 'json' | 'safetensors'): string | Uint8Array {
  const shard = t.shard ? { shard: t.shard.of, total: t.shard.total, indices: t.shard.indices } : {};
  if (format === 'json') {
    return `${JSON.stringify({ kind: t.kind, checkpoint: t.checkpoint, dim: t.dim, inputs: t.inputs, embeddings: rows(t.data, t.dim), ...(t.projected ? { projectedDim: t.projected.dim, projected: rows(t.projected.data, t.projected.dim) } : {}), ...shard })}\n`;
  }
  const n = t.inputs.length;
  const entries: Parameters<typeof serializeSafetensors>[0] = { embeddings: { dtype: 'F32', shape: [n, t.dim], data: t.data } };
  if (t.projected) entries.projected = { dtype: 'F32', shape: [n, t.projected.dim], data: t.projected.data };
  const meta: Record<string, string> = { kind: t.kind, checkpoint: t.checkpoint, inputs: JSON.stringify(t.inputs) };
  if (t.shard) Object.assign(meta, { shard: t.shard.of, total: String(t.shard.total), indices: JSON.stringify(t.shard.indices) });
  return serializeSafetensors(entries, meta);
}

/** One JSON Lines row of a features job. */
function jsonlRow(kind: string, item: InputItem, embedding: Float32Array, projected?: Float32Array): string {
  return `${JSON.stringify({ index: item.index, input: item.path, kind, embedding: Array.from(embedding), ...(projected ? { projected: Array.from(projected) } : {}) })}\n`;
}

export function featuresCommand(): Command {
  return withInputFlags(withDeviceOptions(withConfig(new Command('features'))), 'the inputs')
    .description('image embeddings from a ViT checkpoint folder (--vision), or text embeddings from a CLIP text checkpoint folder (--text)')
    .argument('[inputs...]', 'image files, folders (every image under them) or globs (with --vision); strings (with --text)')
    .option('--vision <dir>', 'image encoder folder: *.safetensors (timm, HF ViT or HF CLIP) + config.json + preprocessor_config.json')
    .option('--text <dir>', 'CLIP text folder: *.safetensors + config.json + tokenizer.json')
    .option('--image-size <px>', "input side (default: the checkpoint's; position embeddings are resized)", intArg(1, 4096))
    .option('--ssvp-k <k>', 'run SsVP keeping k patches for the last layer (0: the plain ViT)', intArg(0, 1_000_000), 0)
    .option('--batch <n>', 'inputs per forward pass', intArg(1, 4096), 8)
    .option('--out <file>', 'write the embeddings to file.json, file.safetensors or file.jsonl (one row per input, written as it is computed; default: JSON on stdout)')
    .option('--json', 'print one JSON object (the default when --out is not given)')
    .option('--jsonl', 'stream one JSON row per input to stdout ({index, input, embedding}), as each batch is done')
    .action(async (args: string[], _opts: unknown, cmd: Command) => {
      const o = resolveOptions<FeaturesOptions>(cmd);
      if (Boolean(o.vision) === Boolean(o.text)) throw new CliError('features: give exactly one of --vision <dir> or --text <dir>', ExitCode.usage);
      if (o.out && !/\.(json|jsonl|safetensors)$/.test(o.out)) throw new CliError(`--out ${o.out}: expected a .json, .jsonl or .safetensors file name`, ExitCode.usage);
      if (o.out && o.jsonl) throw new CliError('--jsonl streams to stdout; with --out, name a .jsonl file instead', ExitCode.usage);
      const { items, total } = expandInputs(args, { ...(o.list ? { list: o.list } : {}), ...(o.shard ? { shard: o.shard } : {}), images: Boolean(o.vision) });
      if (o.out && !o.json) printConfig('features', effectiveConfig(cmd));
      const dev = await openDevice(o);
      let table: EmbeddingTable;
      let jsonl: JsonlWriter | undefined;
      try {
        const enc = o.vision ? imageEncoder(dev, o) : textEncoder(dev, o);
        const data = new Float32Array(items.length * enc.dim);
        const projected = enc.projectedDim ? new Float32Array(items.length * enc.projectedDim) : undefined;
        const stream = o.jsonl || o.out?.endsWith('.jsonl');
        jsonl = stream ? new JsonlWriter(o.out) : undefined;
        let at = 0;
        await enc.run(items, o.batch, {
          rows(chunk, d, p) {
            chunk.forEach((item, i) => {
              const row = d.subarray(i * enc.dim, (i + 1) * enc.dim);
              const prow = p && enc.projectedDim ? p.subarray(i * enc.projectedDim, (i + 1) * enc.projectedDim) : undefined;
              if (jsonl) jsonl.write(jsonlRow(enc.kind, item, row, prow));
              else {
                data.set(row, (at + i) * enc.dim);
                if (prow && projected) projected.set(prow, (at + i) * enc.projectedDim!);
              }
            });
            at += chunk.length;
          },
        });
        enc.dispose();
        table = {
          kind: enc.kind,
          checkpoint: enc.checkpoint,
          dim: enc.dim,
          inputs: items.map((i) => i.path),
          data,
          ...(projected ? { projected: { dim: enc.projectedDim!, data: projected } } : {}),
          ...(o.shard ? { shard: { indices: items.map((i) => i.index), total, of: `${o.shard.index}/${o.shard.count}` } } : {}),
        };
        jsonl?.commit();
      } catch (err) {
        jsonl?.abandon();
        if (err instanceof WeightsError || (err as Error).name === 'TokenizerError') throw new CliError((err as Error).message);
        throw err;
      } finally {
        dev.destroy();
      }
      if (o.jsonl) return;
      if (!o.out) {
        process.stdout.write(embeddingFile(table, 'json') as string);
        return;
      }
      if (!o.out.endsWith('.jsonl')) writeFileAtomic(o.out, embeddingFile(table, o.out.endsWith('.json') ? 'json' : 'safetensors'));
      const n = table.inputs.length;
      if (o.json) process.stdout.write(`${JSON.stringify({ out: o.out, kind: table.kind, count: n, dim: table.dim, ...(o.shard ? { shard: `${o.shard.index}/${o.shard.count}`, total } : {}) })}\n`);
      else process.stdout.write(`wrote ${n} ${table.kind} embeddings of width ${table.dim}${table.projected ? ` (and projected, width ${table.projected.dim})` : ''}${o.shard ? ` (shard ${o.shard.index}/${o.shard.count} of ${total} inputs)` : ''} to ${o.out}\n`);
    });
}
