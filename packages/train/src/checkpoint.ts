// A run's checkpoints. Each one is two data files named by the step (the model as MPFGVC.save
// writes it, the optimiser state as safetensors) and `checkpoint.json`, which names them and holds
// the position of the run. Every file is written atomically and checkpoint.json last: it is the
// commit point, so a crash at any moment leaves the previous checkpoint whole and in force. The
// files of older checkpoints are removed only after the new checkpoint.json is in place.
//
// checkpoint.json is data, not trusted: it is checked against a schema, the file names it holds
// must be exactly the ones its position implies (no path can be smuggled in through them), and the
// files are read only if they are regular files inside the run folder, symlinks included.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { OptimizerState } from '@mpfgvc/kernels';
import { type Stage, parseSafetensors, parseWith, readF32, serializeSafetensors } from '@mpfgvc/model';
import { writeFileAtomic } from './atomic.js';
import type { EpochPosition } from './images/epoch-order.js';
import { childFile, insideFolder, readRegularFile, readRegularText, realFolder } from './safe-files.js';

export const CHECKPOINT_FILE = 'checkpoint.json';
/** The checkpoint at the end of stage 1, kept through stage 2: a longer stage 2 restarts from it. */
export const STAGE1_CHECKPOINT_FILE = 'checkpoint-stage1.json';

/** Where a run stands after an optimiser step. */
export interface RunPosition {
  stage: Stage;
  /** The stage is complete (evaluated); a resumed run starts the next stage. */
  stageDone: boolean;
  /** Optimiser steps of the run so far (both stages). */
  step: number;
  /** Optimiser steps of this stage so far (the schedule's step). */
  stageStep: number;
  /** Where the next batch of this stage starts in the seeded epoch order. */
  data: EpochPosition;
}

export interface CheckpointRecord {
  format: 'mpfgvc-run-1';
  position: RunPosition;
  model: string;
  optimizer: string;
  /**
   * The data order and every augmentation draw are pure functions of (seed, epoch, sample), so the
   * seed and the position restore them; no generator state is carried between steps.
   */
  seed: number;
  /** The effective configuration the run was started with. */
  config: unknown;
  /** Images skipped so far: path -> reason. */
  skipped: Record<string, string>;
  /** Length of metrics.jsonl when the checkpoint was written: a resume drops the rows after it. */
  metricsBytes?: number;
  time: string;
}

export interface LoadedCheckpoint {
  record: CheckpointRecord;
  model: Uint8Array;
  optimizer: OptimizerState;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** The name stem of a checkpoint's files: `step-120`, or `step-300-stage1` at a stage's end. */
export function checkpointTag(position: Pick<RunPosition, 'step' | 'stage' | 'stageDone'>): string {
  return `step-${position.step}${position.stageDone ? `-stage${position.stage}` : ''}`;
}

const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

const positionSchema = z
  .strictObject({
    stage: z.union([z.literal(1), z.literal(2)]),
    stageDone: z.boolean(),
    step: count,
    stageStep: count,
    data: z.strictObject({ epoch: count, index: count }),
  })
  .refine((p) => p.stageStep <= p.step, { message: 'stageStep exceeds step', path: ['stageStep'] });

const recordSchema = z
  .strictObject({
    format: z.literal('mpfgvc-run-1'),
    position: positionSchema,
    model: z.string(),
    optimizer: z.string(),
    seed: z.int().min(0).max(0xffffffff),
    config: z.record(z.string(), z.unknown()),
    skipped: z.record(z.string(), z.string()),
    metricsBytes: count.optional(),
    time: z.string(),
  })
  .superRefine((r, ctx) => {
    const tag = checkpointTag(r.position);
    for (const [key, suffix] of [['model', 'model'], ['optimizer', 'optim']] as const) {
      const want = `${tag}.${suffix}.safetensors`;
      if (r[key] !== want) ctx.addIssue({ code: 'custom', path: [key], message: `must be '${want}' for the recorded position`, input: r[key] });
    }
  });

/** Checks a parsed checkpoint.json; `source` names it in errors. */
export function parseCheckpointRecord(json: unknown, source: string): CheckpointRecord {
  return parseWith(recordSchema, json, source, (m) => new CheckpointError(m)) as CheckpointRecord;
}

/** checkpoint.json of `dir` (or another record file there), checked; throws CheckpointError naming the file and the key at fault. */
export function readCheckpointRecord(dir: string, file = CHECKPOINT_FILE): CheckpointRecord {
  const path = join(dir, file);
  if (!existsSync(path)) throw new CheckpointError(`cannot resume from ${dir}: missing ${file}`);
  let json: unknown;
  try {
    json = JSON.parse(readRegularText(path, { what: 'checkpoint record', maxBytes: MAX_RECORD_BYTES }));
  } catch (e) {
    throw new CheckpointError(`${path}: unreadable (${(e as Error).message})`);
  }
  return parseCheckpointRecord(json, path);
}

/** checkpoint.json holds the configuration and the skipped files; larger ones are refused unread. */
const MAX_RECORD_BYTES = 256 * 1024 * 1024;

/** A file a checkpoint.json names: a plain name, a regular file, inside the run folder after symlinks. */
export function checkpointFile(dir: string, name: string, record: string): Uint8Array {
  const p = childFile(dir, name, record);
  if (!existsSync(p)) throw new CheckpointError(`${record} names ${name}, which is missing`);
  insideFolder(realFolder(dir), p, `${record} names`);
  const b = readRegularFile(p, { what: 'checkpoint file' });
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Throws when any float of a safetensors file is NaN or infinite, naming the tensor. */
export function assertFiniteSafetensors(bytes: Uint8Array, what: string): void {
  const st = parseSafetensors(bytes, what);
  for (const [key, e] of st.tensors) {
    if (e.dtype !== 'F32') continue;
    const v = readF32(st, key);
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i]!)) throw new CheckpointError(`${what}: tensor '${key}' holds ${v[i]} at ${i}`);
    }
  }
}

export function serializeOptimizer(state: OptimizerState): Uint8Array {
  const entries: Parameters<typeof serializeSafetensors>[0] = {};
  const index = state.params.map((p, i) => {
    for (const [b, data] of Object.entries(p.buffers)) entries[`${i}.${b}`] = { dtype: 'F32', shape: [data.length], data };
    return { name: p.name, step: p.step, buffers: Object.keys(p.buffers) };
  });
  return serializeSafetensors(entries, { format: 'mpfgvc-optimizer-1', kind: state.kind, params: JSON.stringify(index) });
}

const optimizerIndexSchema = z.array(z.strictObject({ name: z.string(), step: count, buffers: z.array(z.string()).max(16) }));

export function parseOptimizer(bytes: Uint8Array, source: string): OptimizerState {
  const st = parseSafetensors(bytes, source);
  if (st.metadata.format !== 'mpfgvc-optimizer-1' || !st.metadata.kind || !st.metadata.params) {
    throw new CheckpointError(`${source}: not an optimiser state written by this trainer`);
  }
  let json: unknown;
  try {
    json = JSON.parse(st.metadata.params);
  } catch (e) {
    throw new CheckpointError(`${source}: metadata 'params' is not JSON (${(e as Error).message})`);
  }
  const index = parseWith(optimizerIndexSchema, json, `${source}: metadata params`, (m) => new CheckpointError(m));
  return {
    kind: st.metadata.kind,
    params: index.map((p, i) => ({ name: p.name, step: p.step, buffers: Object.fromEntries(p.buffers.map((b) => [b, readF32(st, `${i}.${b}`)])) })),
  };
}

/**
 * Writes a checkpoint into `dir`. The model and optimiser bytes are checked to be finite first: a
 * diverged state never replaces the last good checkpoint.
 */
export function writeCheckpoint(dir: string, rec: Omit<CheckpointRecord, 'format' | 'model' | 'optimizer' | 'time'>, model: Uint8Array, optimizer: Uint8Array): CheckpointRecord {
  const tag = checkpointTag(rec.position);
  const record: CheckpointRecord = { format: 'mpfgvc-run-1', ...rec, model: `${tag}.model.safetensors`, optimizer: `${tag}.optim.safetensors`, time: new Date().toISOString() };
  assertFiniteSafetensors(model, `checkpoint at step ${rec.position.step}: model`);
  assertFiniteSafetensors(optimizer, `checkpoint at step ${rec.position.step}: optimiser state`);
  writeFileAtomic(join(dir, record.model), model);
  writeFileAtomic(join(dir, record.optimizer), optimizer);
  const json = JSON.stringify(record, null, 1) + '\n';
  if (record.position.stage === 1 && record.position.stageDone) writeFileAtomic(join(dir, STAGE1_CHECKPOINT_FILE), json);
  writeFileAtomic(join(dir, CHECKPOINT_FILE), json);
  // Older checkpoints' files go; the end of stage 1 stays while its record names it.
  const keep = new Set([record.model, record.optimizer]);
  const stage1 = existsSync(join(dir, STAGE1_CHECKPOINT_FILE)) ? tryRecord(dir, STAGE1_CHECKPOINT_FILE) : undefined;
  if (stage1) keep.add(stage1.model).add(stage1.optimizer);
  for (const f of readdirSync(dir)) {
    if (/^step-\d+(-stage\d)?\.(model|optim)\.safetensors$/.test(f) && !keep.has(f)) rmSync(join(dir, f), { force: true });
  }
  return record;
}

function tryRecord(dir: string, file: string): CheckpointRecord | undefined {
  try {
    return readCheckpointRecord(dir, file);
  } catch {
    return undefined;
  }
}

export function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, CHECKPOINT_FILE));
}

/** Reads the checkpoint in force in `dir` (or the one another record there names); errors name the file and the key at fault. */
export function readCheckpoint(dir: string, file = CHECKPOINT_FILE): LoadedCheckpoint {
  const record = readCheckpointRecord(dir, file);
  const path = join(dir, file);
  return { record, model: checkpointFile(dir, record.model, path), optimizer: parseOptimizer(checkpointFile(dir, record.optimizer, path), join(dir, record.optimizer)) };
}
