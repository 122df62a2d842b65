// The parsers under fuzzing, each with the seeds its inputs are mutated from and the error kinds
// it may throw: anything else that comes out (a TypeError, a RangeError from a DataView) is a
// finding, as is an input that hangs or takes more memory than the campaign allows.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import type { Rng } from '@mpfgvc/kernels';
import { ClipTokenizer, checkModelFile, parseSafetensors, readF32 } from '@mpfgvc/model';
import { type TrainConfigInput, imageConfig, openDataset, prepareBatch, readCheckpointRecord, readMat5, recordedConfig, resolveConfig } from '@mpfgvc/train';
import { withTrainFlags, trainInput } from '../commands/train.js';
import { applyConfig } from '../commands/options.js';
import { parseMetrics } from '../render/curves.js';
import { inputRng, mutateBytes, mutateJson, mutateJsonText, pick } from './mutate.js';

/** What the campaign's main thread prepares once and hands to every worker. */
export interface Seeds {
  /** A small MP-FGVC model file (MPFGVC.save). */
  model: Uint8Array;
  /** Other safetensors files (ViT and CLIP text fixtures). */
  safetensors: Uint8Array[];
  tokenizer: unknown;
  mat: Uint8Array[];
  images: Uint8Array[];
  /** A valid checkpoint.json (its configuration a resolved demo run's). */
  checkpoint: unknown;
  /** A metrics.jsonl with every kind of row. */
  metrics: string;
  /** --config objects of `train`. */
  trainConfigs: unknown[];
  /** Index files of each dataset layout, by path relative to the dataset root. */
  layouts: Record<string, Record<string, string>>;
}

export interface Target {
  name: string;
  /** What one input is, for the report. */
  input: string;
  /** Names of the error classes a rejection may have. */
  allowed: readonly string[];
  /** Prepares the target in a worker (temporary folders); returns the function run per input. */
  open(seeds: Seeds, dir: string): (rng: Rng, index: number) => unknown;
}

function readAllTensors(bytes: Uint8Array, source: string): void {
  const st = parseSafetensors(bytes, source);
  for (const [key, e] of st.tensors) if (e.dtype === 'F32' || e.dtype === 'F16' || e.dtype === 'BF16' || e.dtype === 'F64') readF32(st, key);
}

function modelHeaderLength(bytes: Uint8Array): number {
  return 8 + Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
}

/** A model file whose metadata JSON (config or tokens) was edited structurally, the header rebuilt around it. */
function editedModel(rng: Rng, model: Uint8Array): Uint8Array {
  const headerEnd = modelHeaderLength(model);
  const header = JSON.parse(Buffer.from(model.subarray(8, headerEnd)).toString('utf8')) as { __metadata__: Record<string, string> };
  const key = pick(rng, ['config', 'tokens', 'format']);
  const meta = header.__metadata__;
  if (key === 'format') meta.format = pick(rng, ['mpfgvc-0', '', 'mpfgvc-1 ']);
  else if (rng.next() < 0.85) meta[key] = JSON.stringify(mutateJson(rng, JSON.parse(meta[key]!)));
  else delete meta[key];
  const json = Buffer.from(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + model.length - headerEnd);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(model.subarray(headerEnd), 8 + json.length);
  return out;
}

function writeTree(root: string, files: Record<string, string | Uint8Array>): void {
  for (const [rel, data] of Object.entries(files)) {
    mkdirSync(join(root, rel, '..'), { recursive: true });
    writeFileSync(join(root, rel), data);
  }
}

export const TARGETS: readonly Target[] = [
  {
    name: 'safetensors',
    input: 'a model file with 1-4 byte edits, mostly in the header',
    allowed: ['WeightsError'],
    open: (seeds) => (rng) => {
      const src = rng.next() < 0.7 ? seeds.model : pick(rng, seeds.safetensors);
      readAllTensors(mutateBytes(rng, src, { focus: modelHeaderLength(src), other: seeds.model }), 'fuzz.safetensors');
    },
  },
  {
    name: 'model metadata',
    input: "a model file whose metadata (configuration, prompt tokens) was edited, checked as MPFGVC.load does before building",
    allowed: ['WeightsError'],
    open: (seeds) => (rng) => {
      checkModelFile(parseSafetensors(editedModel(rng, seeds.model), 'fuzz.safetensors'));
    },
  },
  {
    name: 'mat',
    input: "a Stanford Dogs list (.mat, compressed or not) with 1-4 byte edits",
    allowed: ['MatError'],
    open: (seeds) => (rng) => {
      const src = pick(rng, seeds.mat);
      readMat5(mutateBytes(rng, src, { focus: rng.next() < 0.5 ? 256 : src.length }));
    },
  },
  {
    name: 'tokenizer',
    input: 'a CLIP tokenizer.json edited structurally or byte-wise, then used to encode a prompt',
    allowed: ['TokenizerError'],
    open: (seeds) => (rng) => {
      const tok = ClipTokenizer.fromText(mutateJsonText(rng, seeds.tokenizer), { contextLength: 77, source: 'fuzz.json' });
      tok.encodeBatch(['a photo of a bird.', 'Black-footed Albatross'], { truncate: true });
    },
  },
  {
    name: '--config',
    input: "a `train --config` object edited structurally, through the flags' parsers into a resolved run configuration",
    allowed: ['CliError', 'ConfigurationError', 'ConfigError'],
    open: (seeds) => (rng) => {
      const cmd = withTrainFlags(new Command('train')).exitOverride();
      cmd.parse([], { from: 'user' });
      applyConfig(cmd, mutateJson(rng, pick(rng, seeds.trainConfigs)), 'fuzz.json');
      const o = cmd.opts() as Parameters<typeof trainInput>[0];
      // Only what needs no file: other datasets, model files and checkpoint folders are read from disk.
      if (o.data !== 'synth' || o.dataRoot || o.vision || o.text || o.tokenizer || o.resume || !['demo', 'vit-b16'].includes(o.model)) return;
      resolveConfig(trainInput(o).input);
    },
  },
  {
    name: 'checkpoint.json',
    input: 'a checkpoint.json edited structurally or byte-wise, read as --resume reads it (record, then its configuration)',
    allowed: ['CheckpointError', 'ConfigurationError'],
    open: (seeds, dir) => {
      const run = join(dir, 'run');
      mkdirSync(run, { recursive: true });
      return (rng) => {
        writeFileSync(join(run, 'checkpoint.json'), mutateJsonText(rng, seeds.checkpoint));
        const record = readCheckpointRecord(run);
        resolveConfig(recordedConfig(record.config), 'checkpoint.json: config');
      };
    },
  },
  {
    name: 'metrics.jsonl',
    input: 'a metrics.jsonl whose rows were edited structurally or byte-wise, read as plot reads it',
    allowed: ['MetricsError'],
    open: (seeds) => (rng) => {
      const lines = seeds.metrics.split('\n');
      const k = Math.floor(rng.next() * lines.length);
      lines[k] = rng.next() < 0.7 ? JSON.stringify(mutateJson(rng, JSON.parse(lines[k]!))) : mutateJsonText(rng, JSON.parse(lines[k]!));
      parseMetrics(lines.join('\n'), 'fuzz.jsonl');
    },
  },
  {
    name: 'dataset lists',
    input: 'one index file of a CUB, NABirds, Food-101 or Stanford Dogs (text lists) folder, edited line- or byte-wise',
    allowed: ['DatasetError', 'UnsafePathError', 'FileKindError'],
    open: (seeds, dir) => {
      const roots = Object.fromEntries(
        Object.entries(seeds.layouts).map(([kind, files]) => {
          const root = join(dir, kind);
          writeTree(root, files);
          return [kind, root];
        }),
      );
      return (rng) => {
        const kind = pick(rng, Object.keys(seeds.layouts));
        const files = seeds.layouts[kind]!;
        const rel = pick(rng, Object.keys(files).filter((f) => f.endsWith('.txt')));
        const text = files[rel]!;
        const lines = text.split('\n');
        const edited =
          rng.next() < 0.5
            ? Buffer.from(mutateBytes(rng, Buffer.from(text))).toString('utf8')
            : (() => {
                const i = Math.floor(rng.next() * lines.length);
                const fields = lines[i]!.split(' ');
                const f = Math.floor(rng.next() * fields.length);
                fields[f] = pick(rng, ['../../../etc/passwd', '/dev/zero', '', '-1', '999999999', '1.5', 'x y z', '..', 'a/../../b', '\u0000', fields[f]!.repeat(3)]);
                lines[i] = fields.join(' ');
                return lines.join('\n');
              })();
        writeFileSync(join(roots[kind]!, rel), edited);
        try {
          openDataset(kind as Parameters<typeof openDataset>[0], roots[kind]!, kind === 'imagefolder' ? { superCategory: 'bird' } : {});
        } finally {
          writeFileSync(join(roots[kind]!, rel), text);
        }
      };
    },
  },
  {
    name: 'images',
    input: 'a PNG or JPEG with 1-4 byte edits, through the training pipeline (decode, crop, normalise)',
    allowed: [],
    open: (seeds, dir) => {
      const file = join(dir, 'image.png');
      const cfg = imageConfig({ size: 32, train: true });
      return async (rng) => {
        const src = pick(rng, seeds.images);
        writeFileSync(file, mutateBytes(rng, src, { focus: rng.next() < 0.5 ? 64 : src.length }));
        // Unreadable images are skipped, never thrown: any exception is a finding.
        await prepareBatch(cfg, { seed: 0, epoch: 0, indices: [0], paths: [file], root: dir }, false);
      };
    },
  },
];

/**
 * Targets that misbehave on purpose, run only when named: they show that the runner sees each kind
 * of finding (the tests run them with small limits).
 */
export const SELF_TESTS: readonly Target[] = [
  {
    name: 'self-test foreign',
    input: 'every other input throws a TypeError',
    allowed: ['RangeError'],
    open: () => (rng) => {
      if (rng.next() < 0.5) throw new TypeError('not an error of this parser');
      throw new RangeError('an allowed rejection');
    },
  },
  {
    name: 'self-test hang',
    input: 'input 0 never returns',
    allowed: [],
    open: () => (_rng, index) => {
      if (index === 0) for (;;);
    },
  },
  {
    name: 'self-test memory',
    input: 'input 0 holds 512 MiB for two seconds',
    allowed: [],
    open: () => async (_rng, index) => {
      if (index !== 0) return;
      const held = Buffer.alloc(512 * 2 ** 20, 1);
      await new Promise((r) => setTimeout(r, 2000));
      return held.length;
    },
  },
];

export function targetByName(name: string): Target {
  const t = [...TARGETS, ...SELF_TESTS].find((x) => x.name === name);
  if (!t) throw new Error(`no fuzz target '${name}' (${TARGETS.map((x) => x.name).join(', ')})`);
  return t;
}

/** A fresh temporary folder for one worker's files. */
export function workerDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'mpfgvc-fuzz-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export { inputRng };
