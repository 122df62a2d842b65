// A run's checkpoints. Each one is two data files named by the step (the model as MPFGVC.save
// writes it, the optimiser state as safetensors) and `checkpoint.json`, which names them and holds
// the position of the run. Every file is written atomically and checkpoint.json last: it is the
// commit point, so a crash at any moment leaves the previous checkpoint whole and in force. The
// files of older checkpoints are removed only after the new checkpoint.json is in place.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { OptimizerState } from '@mpfgvc/kernels';
import { type Stage, parseSafetensors, readF32, serializeSafetensors } from '@mpfgvc/model';
import { writeFileAtomic } from './atomic.js';
import type { EpochPosition } from './images/epoch-order.js';

export const CHECKPOINT_FILE = 'checkpoint.json';

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

export function parseOptimizer(bytes: Uint8Array, source: string): OptimizerState {
  const st = parseSafetensors(bytes, source);
  if (st.metadata.format !== 'mpfgvc-optimizer-1' || !st.metadata.kind || !st.metadata.params) {
    throw new CheckpointError(`${source}: not an optimiser state written by this trainer`);
  }
  const index = JSON.parse(st.metadata.params) as { name: string; step: number; buffers: string[] }[];
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
  const tag = `step-${rec.position.step}${rec.position.stageDone ? `-stage${rec.position.stage}` : ''}`;
  const record: CheckpointRecord = { format: 'mpfgvc-run-1', ...rec, model: `${tag}.model.safetensors`, optimizer: `${tag}.optim.safetensors`, time: new Date().toISOString() };
  assertFiniteSafetensors(model, `checkpoint at step ${rec.position.step}: model`);
  assertFiniteSafetensors(optimizer, `checkpoint at step ${rec.position.step}: optimiser state`);
  writeFileAtomic(join(dir, record.model), model);
  writeFileAtomic(join(dir, record.optimizer), optimizer);
  writeFileAtomic(join(dir, CHECKPOINT_FILE), JSON.stringify(record, null, 1) + '\n');
  for (const f of readdirSync(dir)) {
    if (/^step-\d+(-stage\d)?\.(model|optim)\.safetensors$/.test(f) && f !== record.model && f !== record.optimizer) rmSync(join(dir, f), { force: true });
  }
  return record;
}

export function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, CHECKPOINT_FILE));
}

/** Reads the checkpoint in force in `dir`; errors name the file at fault. */
export function readCheckpoint(dir: string): LoadedCheckpoint {
  const path = join(dir, CHECKPOINT_FILE);
  if (!existsSync(path)) throw new CheckpointError(`cannot resume from ${dir}: missing ${CHECKPOINT_FILE}`);
  let record: CheckpointRecord;
  try {
    record = JSON.parse(readFileSync(path, 'utf8')) as CheckpointRecord;
  } catch (e) {
    throw new CheckpointError(`${path}: unreadable (${(e as Error).message})`);
  }
  if (record.format !== 'mpfgvc-run-1') throw new CheckpointError(`${path}: not a checkpoint of this trainer (format ${JSON.stringify(record.format)})`);
  const file = (name: string) => {
    const p = join(dir, name);
    if (!existsSync(p)) throw new CheckpointError(`${path} names ${name}, which is missing`);
    return new Uint8Array(readFileSync(p));
  };
  return { record, model: file(record.model), optimizer: parseOptimizer(file(record.optimizer), join(dir, record.optimizer)) };
}
