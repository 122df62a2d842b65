// metrics.jsonl: one JSON object per line, appended and handed to the OS row by row (then synced),
// so a crash loses at most the row being written. A resumed run appends to the same file after
// dropping the rows written past its checkpoint.
import { closeSync, fdatasyncSync, fstatSync, openSync, writeSync } from 'node:fs';
import type { Stage } from '@mpfgvc/model';
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
  split: 'test';
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
