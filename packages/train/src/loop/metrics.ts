// metrics.jsonl: one JSON object per line, appended and handed to the OS row by row (then synced),
// so a crash loses at most the row being written. A resumed run appends to the same file after
// dropping the rows written past its checkpoint.
import { closeSync, fdatasyncSync, fstatSync, openSync, writeSync } from 'node:fs';
import { type Stage, parseWith } from '@mpfgvc/model';
import { z } from 'zod';
import { writing } from '../atomic.js';
import type { Head } from '../eval.js';

export interface StepRow {
  stage: Stage;
  epoch: number;
  step: number;
  lr: number;
  loss: number;
  lossVision?: number;
  lossText?: number;
  /** The global gradient norm before clipping (when clipping is on). */
  gradNorm?: number;
  imagesPerSec: number;
  /** Seconds since this process started the run. */
  time: number;
}

export interface EvalRow {
  stage: Stage;
  epoch: number;
  /** Validation during training (and at each stage's end), test at each stage's end. */
  split: 'val' | 'test';
  /** The model's heads only (the ViT-only model: vision). */
  top1: Partial<Record<Head, number>>;
  top5: Partial<Record<Head, number>>;
}

export class MetricsLog {
  private fd: number;

  constructor(readonly path: string) {
    this.fd = writing(path, () => openSync(path, 'a'));
  }

  append(row: object): void {
    writing(this.path, () => {
      writeSync(this.fd, JSON.stringify(row) + '\n');
      fdatasyncSync(this.fd);
    });
  }

  /** The file's length now (a checkpoint records it; a resume drops what came after). */
  get bytes(): number {
    return fstatSync(this.fd).size;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** A row of metrics.jsonl that is not one the loop writes. */
export class MetricsError extends Error {
  override name = 'MetricsError';
}

const stage = z.literal([1, 2]);
const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const finite = z.number().refine(Number.isFinite, { message: 'expected a finite number' });
const accuracies = z.partialRecord(z.enum(['vision', 'text', 'vlfm', 'ensemble']), z.number().min(0).max(1));

const stepRowSchema = z.strictObject({
  stage,
  epoch: count,
  step: count.min(1),
  lr: finite.min(0),
  loss: finite,
  lossVision: finite.optional(),
  lossText: finite.optional(),
  gradNorm: finite.min(0).optional(),
  imagesPerSec: finite.min(0),
  time: finite.min(0),
});
const evalRowSchema = z.strictObject({ stage, epoch: count, split: z.enum(['val', 'test']), top1: accuracies, top5: accuracies });
const eventRowSchema = z.discriminatedUnion('event', [
  z.strictObject({ event: z.literal('resume'), stage, step: count, time: finite.min(0) }),
  z.strictObject({ event: z.literal('diverged'), stage, epoch: count, step: count, lr: finite, time: finite.min(0) }),
]);

export type MetricsRow = ({ kind: 'step' } & StepRow) | ({ kind: 'eval' } & EvalRow) | { kind: 'event'; event: 'resume' | 'diverged'; stage: Stage; step: number };

/**
 * One parsed line of metrics.jsonl, checked against the rows the loop writes (a step, an
 * evaluation, or an event); `where` names the file and line in errors.
 */
export function parseMetricsRow(json: unknown, where: string): MetricsRow {
  const err = (m: string) => new MetricsError(m);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw err(`${where}: expected an object (a step, evaluation or event row)`);
  if ('event' in json) return { kind: 'event', ...(parseWith(eventRowSchema, json, where, err) as { event: 'resume' | 'diverged'; stage: Stage; step: number }) };
  if ('split' in json || 'top1' in json) return { kind: 'eval', ...(parseWith(evalRowSchema, json, where, err) as EvalRow) };
  return { kind: 'step', ...(parseWith(stepRowSchema, json, where, err) as StepRow) };
}

