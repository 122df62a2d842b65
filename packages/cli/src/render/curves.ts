// A run's metrics.jsonl as two charts: the training loss of each stage over optimiser steps, and
// the top-1 of each head over epochs (on the validation split when the run has one, else the test
// split).
import { MetricsError, parseMetricsRow } from '@mpfgvc/train';
import { type ChartSpec, type Series, chartsSvg } from './chart.js';

export interface Curves {
  /** Stage -> (step, loss). */
  loss: Map<number, [number, number][]>;
  /** Head -> (epoch, top-1 in %). */
  top1: Map<string, [number, number][]>;
  /** Where stage 2 begins: its first step, and stage 1's last epoch. */
  stageTwo?: { step?: number; epoch: number };
  /** The split the top-1 curves are on. */
  split?: 'val' | 'test';
}

type Row = Record<string, unknown>;

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * Reads the loop's metrics rows (each checked by parseMetricsRow: step rows {stage, step, loss, ...},
 * evaluation rows {stage, epoch, top1: {head: accuracy}} and events); `where` names the file in errors.
 * Stage 2's epochs continue stage 1's on the x axis (epochs done); accuracies in [0, 1] are shown in percent.
 */
export function parseMetrics(text: string, where: string): Curves {
  const curves: Curves = { loss: new Map(), top1: new Map() };
  const evals: { stage: number; epoch: number; split: string; top1: Row }[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new MetricsError(`${where} line ${i + 1}: not JSON`);
    }
    const row = parseMetricsRow(json, `${where} line ${i + 1}`);
    if (row.kind === 'eval') evals.push({ stage: row.stage, epoch: row.epoch, split: row.split, top1: row.top1 as Row });
    else if (row.kind === 'step') {
      const pts = curves.loss.get(row.stage) ?? [];
      pts.push([row.step, row.loss]);
      curves.loss.set(row.stage, pts);
    }
  });
  // One split on the chart: validation when the run has it (it is what training was judged by).
  curves.split = evals.some((e) => e.split === 'val') ? 'val' : 'test';
  evals.splice(0, evals.length, ...evals.filter((e) => e.split === curves.split));
  const values = evals.flatMap((e) => Object.values(e.top1).map(num)).filter((v) => v !== undefined);
  const scale = values.every((v) => v <= 1) ? 100 : 1;
  // Rows name the epoch just finished, from 0: plotted at the count of epochs done.
  const stageOneEpochs = Math.max(0, ...evals.filter((e) => e.stage === 1).map((e) => e.epoch + 1));
  const stageTwoSteps = curves.loss.get(2)?.map((p) => p[0]);
  if (stageTwoSteps || evals.some((e) => e.stage === 2)) curves.stageTwo = { epoch: stageOneEpochs, ...(stageTwoSteps ? { step: Math.min(...stageTwoSteps) } : {}) };
  for (const e of evals) {
    const x = (e.stage === 2 ? stageOneEpochs : 0) + e.epoch + 1;
    for (const [head, v] of Object.entries(e.top1)) {
      const acc = num(v);
      if (acc === undefined) continue;
      const pts = curves.top1.get(head) ?? [];
      pts.push([x, acc * scale]);
      curves.top1.set(head, pts);
    }
  }
  return curves;
}

export function curveCharts(c: Curves, title = ''): ChartSpec[] {
  const loss: Series[] = [...c.loss.entries()].sort((a, b) => a[0] - b[0]).map(([stage, points]) => ({ name: `stage ${stage}`, points }));
  const top1: Series[] = [...c.top1.entries()].map(([head, points]) => ({ name: head, points }));
  return [
    { title: `${title}training loss`, xLabel: 'optimiser step', yLabel: 'loss', series: loss, integerX: true },
    {
      title: `${title}${c.split === 'val' ? 'validation' : 'test'} top-1`,
      xLabel: 'epoch (stage 2 continues stage 1)',
      yLabel: 'top-1 (%)',
      series: top1,
      yRange: [0, 100],
      integerX: true,
      markers: c.stageTwo ? [{ x: c.stageTwo.epoch, label: 'stage 2 →' }] : [],
    },
  ];
}

export function curvesSvg(c: Curves, title = ''): string {
  return chartsSvg(curveCharts(c, title));
}
