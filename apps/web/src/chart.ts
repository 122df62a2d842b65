// The training chart: loss per step (left axis) and held-out top-1 per stage end (right axis, %),
// drawn on a canvas; stage boundaries are marked.
import type { TrainProgress } from './engine.js';

export function drawChart(canvas: HTMLCanvasElement, history: readonly TrainProgress[]): void {
  const ctx = canvas.getContext('2d')!;
  const { width: W, height: H } = canvas;
  const pad = { l: 44, r: 44, t: 14, b: 26 };
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W, H);
  ctx.strokeStyle = '#999';
  ctx.strokeRect(pad.l, pad.t, W - pad.l - pad.r, H - pad.t - pad.b);
  ctx.font = '11px sans-serif';
  ctx.fillStyle = '#333';
  if (history.length === 0) {
    ctx.fillText('loss and top-1 appear here while the model trains', pad.l + 8, H / 2);
    return;
  }
  const n = history.length;
  const maxLoss = Math.max(...history.map((h) => h.loss), 1e-6);
  const x = (i: number) => pad.l + ((W - pad.l - pad.r) * i) / Math.max(1, n - 1);
  const yLoss = (v: number) => pad.t + (H - pad.t - pad.b) * (1 - v / maxLoss);
  const yPct = (v: number) => pad.t + (H - pad.t - pad.b) * (1 - v);
  // Stage 2 starts where its first step is.
  const s2 = history.findIndex((h) => h.stage === 2);
  if (s2 > 0) {
    ctx.strokeStyle = '#ccc';
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(x(s2), pad.t);
    ctx.lineTo(x(s2), H - pad.b);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillText('stage 2', x(s2) + 4, pad.t + 12);
  }
  ctx.strokeStyle = '#1f77b4';
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  history.forEach((h, i) => (i ? ctx.lineTo(x(i), yLoss(h.loss)) : ctx.moveTo(x(i), yLoss(h.loss))));
  ctx.stroke();
  ctx.fillStyle = '#1f77b4';
  ctx.fillText(maxLoss.toFixed(2), 4, pad.t + 8);
  ctx.fillText('loss', 4, pad.t + 22);
  ctx.fillText('0', 30, H - pad.b);
  ctx.fillStyle = '#d62728';
  ctx.fillText('top-1', W - pad.r + 6, pad.t + 22);
  ctx.fillText('100%', W - pad.r + 6, pad.t + 8);
  history.forEach((h, i) => {
    const e = h.eval;
    if (!e) return;
    const head = e.heads.includes('ensemble') ? 'ensemble' : 'vision';
    const v = e.top1[head] ?? 0;
    ctx.beginPath();
    ctx.arc(x(i), yPct(v), 4, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillText(`${(100 * v).toFixed(0)}%`, Math.min(x(i) + 6, W - pad.r - 30), yPct(v) - 6);
  });
  ctx.fillStyle = '#333';
  ctx.fillText(`step ${n}`, W - pad.r - 48, H - 8);
}
