// Progress of a long loop: on a terminal one line redrawn in place, never wider than the terminal
// (stage, epoch e/E, a bar that takes the room left (or the share done), images/s, loss, learning
// rate, ETA); elsewhere (logs, pipes, CI) a plain line every few seconds and one at the end, so logs stay
// readable and short. The first updates include compiling the kernels: they are shown as warming
// up, and the rate and ETA are measured from the steps after them.

export interface ProgressOptions {
  label: string;
  total: number;
  /** What is counted (images/s is reported for 'img'). */
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Seconds between plain lines when the stream is not a terminal. */
  interval?: number;
  /** Items already done when this bar starts (a resumed run). */
  initial?: number;
  /** Items per epoch: the line then says which epoch of how many. */
  perEpoch?: number;
  /** Updates before the rate is measured (the first compiles the kernels). Default 1. */
  warmup?: number;
  /** Width of the terminal (default: the stream's, else $COLUMNS, else 80). */
  columns?: number;
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

/** A learning rate in few characters: 3e-4, 1.2e-3. */
function formatLr(lr: number): string {
  if (lr === 0) return '0';
  const [m, e] = lr.toExponential(1).split('e');
  return `${m!.replace(/\.0$/, '')}e${Number(e)}`;
}

export class Progress {
  private readonly start: number;
  private lastLine = -Infinity;
  private done = 0;
  private updates = 0;
  /** Where the rate is measured from: after the warm-up updates. */
  private base: { t: number; done: number } | undefined;
  private loss: number | undefined;
  private lr: number | undefined;
  private finished = false;
  private readonly tty: boolean;
  private readonly stream: NodeJS.WriteStream;
  private readonly now: () => number;

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stdout;
    this.tty = Boolean(this.stream.isTTY);
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
    this.done = opts.initial ?? 0;
    if (opts.warmup === 0) this.base = { t: this.start, done: this.done };
  }

  get complete(): boolean {
    return this.done >= this.opts.total;
  }

  private get columns(): number {
    const c = this.opts.columns ?? this.stream.columns ?? Number(process.env.COLUMNS);
    return Number.isFinite(c) && c > 0 ? c : 80;
  }

  /** A message between bar redraws: on a terminal the bar is cleared, printed under, and redrawn. */
  log(line: string): void {
    if (!this.tty) {
      this.stream.write(`${line}\n`);
      return;
    }
    this.stream.write(`\r\x1b[K${line}\n${this.line(this.now(), true)}`);
  }

  /** `done` items so far (absolute), with the latest loss and learning rate when there are. */
  update(done: number, loss?: number, lr?: number): void {
    const t = this.now();
    this.done = done;
    this.updates++;
    if (this.updates === (this.opts.warmup ?? 1)) this.base = { t, done };
    if (loss !== undefined && Number.isFinite(loss)) this.loss = loss;
    if (lr !== undefined) this.lr = lr;
    if (this.tty) this.stream.write(`\r${this.line(t, true)}\x1b[K`);
    else if (this.done < this.opts.total && (t - this.lastLine) / 1000 >= (this.opts.interval ?? 5)) {
      this.lastLine = t;
      this.stream.write(`${this.line(t, false)}\n`);
    }
  }

  /** The last line, once (later calls do nothing). */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const line = this.line(this.now(), this.tty);
    this.stream.write(this.tty ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  /** Items per second over the steady steps, or undefined while warming up. */
  private rate(t: number): number | undefined {
    if (!this.base || this.done <= this.base.done || t <= this.base.t) return undefined;
    return ((this.done - this.base.done) / (t - this.base.t)) * 1000;
  }

  line(t: number, bar: boolean): string {
    const { label, total, perEpoch } = this.opts;
    const unit = this.opts.unit ?? 'img';
    const frac = total > 0 ? Math.min(1, this.done / total) : 0;
    const rate = this.rate(t);
    const head = [label];
    if (perEpoch && perEpoch > 0) {
      const epochs = Math.ceil(total / perEpoch);
      head.push(`epoch ${Math.min(epochs, Math.floor(this.done / perEpoch) + 1)}/${epochs}`);
    } else head.push(`${this.done}/${total}`);
    const pct = `${Math.floor(100 * frac)}%`;
    // What may be dropped when the terminal is narrow, last first.
    const tail: string[] = [];
    if (rate !== undefined) tail.push(`${rate.toFixed(rate >= 100 ? 0 : 1)} ${unit}/s`);
    else if (this.done < total) tail.push('warming up');
    if (this.loss !== undefined) tail.push(`loss ${this.loss.toFixed(4)}`);
    if (this.lr !== undefined) tail.push(`lr ${formatLr(this.lr)}`);
    const eta = this.done >= total ? `done in ${formatDuration((t - this.start) / 1000)}` : rate ? `ETA ${formatDuration((total - this.done) / rate)}` : '';
    const parts = (withBar: number, drop: number) => {
      const kept = tail.slice(0, tail.length - drop);
      const barText = withBar > 0 ? `[${'#'.repeat(Math.round(frac * withBar))}${'-'.repeat(withBar - Math.round(frac * withBar))}]` : '';
      // The bar shows the share done; without it, the percentage does.
      return [...head, barText || pct, ...kept, eta].filter(Boolean).join('  ');
    };
    if (!bar) return parts(0, 0);
    // Never wider than the terminal (a wrapped line leaves a copy of itself at every redraw).
    const room = this.columns - 1;
    for (let drop = 0; drop <= tail.length; drop++) {
      const without = parts(0, drop).length;
      const width = Math.min(30, room - (without - pct.length) - 2);
      if (width >= 8) return parts(width, drop);
      if (without <= room) return parts(0, drop);
    }
    return parts(0, tail.length).slice(0, room);
  }
}
