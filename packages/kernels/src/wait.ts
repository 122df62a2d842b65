// Waiting for the GPU without a busy host thread.
//
// Dawn's Node bindings poll the device from the event loop (a chain of setImmediate ticks) for as
// long as one of their promises is pending, so `await queue.onSubmittedWorkDone()` or
// `await buffer.mapAsync()` keeps a CPU core busy until the GPU is done. On a software adapter that
// core is one the driver's threads need: on 2 cores (lavapipe) a compute-bound dispatch ran 1.5×
// slower beside the polling thread than with that thread asleep. So the Device sleeps first, for
// most of the time until the work it waits for should be done, and only then asks. The expected
// end comes from the submits not yet known to be done (the queue runs them in order, each from
// when it was submitted or the one before it ended) and a GPU time per dispatch learned from
// earlier waits. Browsers wait without polling, and on a GPU the polling core costs the GPU
// nothing: there the Device asks at once.

/** Share of the expected remaining time slept before asking; the rest is polled. */
const SLEEP_SHARE = 0.85;
/** Shorter expected waits are not worth a timer. */
const MIN_SLEEP_MS = 1;
/** An answer within this of asking means the work was already done when asked. */
const AT_ONCE_MS = 0.5;
/** Weight of a new observation in the running time per dispatch. */
const LEARN = 0.3;

interface Submit {
  seq: number;
  at: number;
  dispatches: number;
}

export class WaitPacer {
  /** Learned GPU milliseconds per dispatch (0 until the first wait). */
  private msPerDispatch = 0;
  /** Submits not yet known to be done, oldest first. */
  private inFlight: Submit[] = [];
  private seq = 0;
  /** When the last wait found everything it covered done. */
  private doneAt = -Infinity;

  /** Sleep before asking; false: ask at once. */
  constructor(public sleepFirst: boolean) {}

  /** Notes a submit of `dispatches` dispatches. */
  submitted(dispatches: number, now = performance.now()): void {
    this.inFlight.push({ seq: ++this.seq, at: now, dispatches });
  }

  /** When the submits so far should be done: each starts at its submit or the end of the one before. */
  expectedEnd(): number {
    let t = this.doneAt;
    for (const s of this.inFlight) t = Math.max(t, s.at) + s.dispatches * this.msPerDispatch;
    return t;
  }

  /** How long a wait that starts at `now` sleeps before asking, in ms (0: it asks at once). */
  plannedSleep(now = performance.now()): number {
    if (!this.sleepFirst || this.msPerDispatch === 0) return 0;
    const ms = SLEEP_SHARE * (this.expectedEnd() - now);
    return ms >= MIN_SLEEP_MS ? ms : 0;
  }

  /**
   * Awaits `ask()`, a promise that settles once everything submitted so far is done, sleeping
   * first where that saves polling; learns from when it settles.
   */
  async wait<T>(ask: () => Promise<T>): Promise<T> {
    const covered = this.seq;
    const sleep = this.plannedSleep();
    if (sleep > 0) await new Promise((r) => setTimeout(r, sleep));
    const asked = performance.now();
    const out = await ask();
    this.settled(covered, asked, performance.now());
    return out;
  }

  /**
   * The submits up to `covered` are done: asked at `asked`, answered at `done`. Their GPU time ran
   * from the first one's start (its submit, or the end of what an earlier wait saw done) to `done`,
   * or, answered at once, to no later than `asked`.
   */
  private settled(covered: number, asked: number, done: number): void {
    const mine = this.inFlight.filter((s) => s.seq <= covered);
    if (mine.length === 0) return;
    this.inFlight = this.inFlight.filter((s) => s.seq > covered);
    const start = Math.max(mine[0]!.at, this.doneAt);
    const n = mine.reduce((a, s) => a + s.dispatches, 0);
    const atOnce = done - asked <= AT_ONCE_MS;
    this.doneAt = atOnce ? asked : done;
    if (n > 0) this.learn((atOnce ? -(asked - start) : done - start) / n);
  }

  /**
   * A time per dispatch observed (positive) or an upper bound of one (negative: the work was done
   * before the wait asked). Slept too long: fall at once to half the bound, so that a cheaper
   * workload after a dear one costs one long sleep, not many; otherwise follow the observations.
   */
  private learn(sample: number): void {
    if (sample < 0) this.msPerDispatch = Math.min(this.msPerDispatch, -sample / 2);
    else this.msPerDispatch = this.msPerDispatch > 0 ? (1 - LEARN) * this.msPerDispatch + LEARN * sample : sample;
  }
}
