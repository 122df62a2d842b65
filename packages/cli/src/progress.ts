// Progress of a long loop: on a terminal one bar redrawn in place (done/total, images/s, loss,
// ETA); elsewhere (logs, pipes, CI) a plain line every few seconds and one at the end, so logs
// stay readable and short.

export interface ProgressOptions {
  label: string;
  total: number;
  /** What is counted (images/s is reported for 'img'). */
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Seconds between plain lines when the stream is not a terminal. */
  interval?: number;
  /** Items already done when this bar starts (a resumed run): not counted in the rate. */
  initial?: number;
  /** Injectable clock (ms) for tests. */
  now?: () => number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export class Progress {
  private readonly start: number;
  private lastLine = -Infinity;
  private done = 0;
  private loss: number | undefined;
  private readonly tty: boolean;
  private readonly stream: NodeJS.WriteStream;
  private readonly now: () => number;

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stdout;
    this.tty = Boolean(this.stream.isTTY);
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
    this.done = opts.initial ?? 0;
  }

  get complete(): boolean {
    return this.done >= this.opts.total;
  }

  /** A message between bar redraws: on a terminal the bar is cleared, printed under, and redrawn. */
  log(line: string): void {
    if (!this.tty) {
      this.stream.write(`${line}\n`);
      return;
    }
    this.stream.write(`\r\x1b[K${line}\n${this.line(this.now(), true)}`);
  }

  /** `done` items so far (absolute), with the latest loss when there is one. */
  update(done: number, loss?: number): void {
    this.done = done;
    if (loss !== undefined && Number.isFinite(loss)) this.loss = loss;
    const t = this.now();
    if (this.tty) this.stream.write(`\r${this.line(t, true)}\x1b[K`);
    else if (this.done < this.opts.total && (t - this.lastLine) / 1000 >= (this.opts.interval ?? 5)) {
      this.lastLine = t;
      this.stream.write(`${this.line(t, false)}\n`);
    }
  }

  finish(): void {
    const line = this.line(this.now(), this.tty);
    this.stream.write(this.tty ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  line(t: number, bar: boolean): string {
    const { label, total } = this.opts;
    const unit = this.opts.unit ?? 'img';
    const elapsed = (t - this.start) / 1000;
    const rate = elapsed > 0 ? (this.done - (this.opts.initial ?? 0)) / elapsed : 0;
    const frac = total > 0 ? Math.min(1, this.done / total) : 0;
    const width = 24;
    const filled = Math.round(frac * width);
    const parts = [label];
    if (bar) parts.push(`[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`);
    parts.push(`${this.done}/${total}`, `${rate.toFixed(1)} ${unit}/s`);
    if (this.loss !== undefined) parts.push(`loss ${this.loss.toFixed(4)}`);
    const eta = this.done >= total ? `done in ${formatDuration(elapsed)}` : `ETA ${rate > 0 ? formatDuration((total - this.done) / rate) : '--:--'}`;
    parts.push(eta);
    return parts.join('  ');
  }
}
