// Waiting for the GPU without a busy host thread.
//
// Dawn's Node bindings poll the device from the event loop (a chain of setImmediate ticks) for as
// long as one of their promises is pending, so `await queue.onSubmittedWorkDone()` or
// `await buffer.mapAsync()` keeps a CPU core busy until the GPU is done. On a software adapter that
// core is one the driver's threads need: on 2 cores (lavapipe) a compute-bound dispatch ran 1.7×
// slower beside the polling thread than with that thread idle. So the Device sleeps first, for
// most of the GPU time that the work submitted since the GPU was last idle should take (a time per
// dispatch learned from earlier waits), and only then asks. Browsers wait without polling: there
// it asks at once.

/** Share of the expected GPU time slept before asking; the rest is polled. */
const SLEEP_SHARE = 0.85;
/** Shorter expected waits are not worth a timer. */
const MIN_SLEEP_MS = 1;
/** An answer within this of asking means the work was already done when asked. */
const AT_ONCE_MS = 0.5;
/** Weight of a new observation in the running time per dispatch. */
const LEARN = 0.3;

export class WaitPacer {
  /** Learned GPU milliseconds per dispatch (0 until the first wait). */
  private msPerDispatch = 0;
  /** When the oldest submit not yet known to be done went in (-1: none). */
  private busySince = -1;
  private dispatches = 0;

  /** Sleep before asking (Dawn in Node); false: ask at once (browsers). */
  constructor(public sleepFirst: boolean) {}

  /** Notes a submit of `dispatches` dispatches. */
  submitted(dispatches: number): void {
    if (this.busySince < 0) this.busySince = performance.now();
    this.dispatches += dispatches;
  }

  /** How long the next wait would sleep before asking, in ms (0: it asks at once). */
  plannedSleep(now = performance.now()): number {
    if (!this.sleepFirst || this.busySince < 0) return 0;
    const ms = SLEEP_SHARE * this.dispatches * this.msPerDispatch - (now - this.busySince);
    return ms >= MIN_SLEEP_MS ? ms : 0;
  }

  /**
   * Awaits `ask()`, a promise that settles once everything submitted so far is done, sleeping
   * first where that saves polling. Learns from when it settles.
   */
  async wait<T>(ask: () => Promise<T>): Promise<T> {
    const start = this.busySince;
    const n = this.dispatches;
    const sleep = this.plannedSleep();
    if (sleep > 0) await new Promise((r) => setTimeout(r, sleep));
    const asked = performance.now();
    const out = await ask();
    const done = performance.now();
    if (start >= 0 && this.busySince === start) {
      this.busySince = -1;
      this.dispatches = 0;
    }
    if (start >= 0 && n > 0) this.learn((done - asked > AT_ONCE_MS ? done - start : -(asked - start)) / n);
    return out;
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
