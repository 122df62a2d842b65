// Waiting for the GPU without a busy host thread.
//
// Dawn's Node bindings poll the device from the event loop (a chain of setImmediate ticks) for as
// long as one of their promises is pending, so `await queue.onSubmittedWorkDone()` or
// `await buffer.mapAsync()` keeps a CPU core busy until the GPU is done. On a software adapter that
// core is one the driver's threads need: on 2 cores (lavapipe) a compute-bound dispatch ran 1.5×
// slower beside the polling thread than with that thread asleep. Two remedies, both where the
// Device's waits are paced (CPU adapters under Dawn):
// - the Device sleeps first, for most of the time until the work it waits for should be done, and
//   only then asks;
// - while it asks, Dawn's ticks are spaced by a timer (`pollGently`): the bindings look up the
//   global setImmediate for every tick, so for the length of the wait a native callback handed to
//   it runs after POLL_MS instead; the answer comes at most that late, and the core sleeps between
//   ticks (on the same dispatch loop: 1.6× faster, host CPU time 301 → 185 ms per submit).
//
// The expected end comes from the submits not yet known to be done: the queue runs them in order,
// each from its submit or the end of the one before, and each takes what the same work took the
// last times it was waited for. "The same work" is a submit's signature (its kernels and
// workgroup counts, in order): a training or inference loop repeats one. Work never seen before
// is expected to take no time, so the wait asks at once, as without pacing; a sleep can only
// overshoot when known work suddenly runs faster, and then it learns that at once. Browsers
// wait without polling, and on a GPU the polling core costs the GPU nothing: there the Device
// asks at once and Dawn polls as it likes.

/** Share of the expected remaining time slept before asking; the rest is polled. */
const SLEEP_SHARE = 0.85;
/** At least this much of an expected wait is polled, not slept. */
const MIN_POLL_MS = 8;
/**
 * An answer within this of asking means the work was done before it was asked about (Dawn
 * answers a finished onSubmittedWorkDone in ~0.2 ms, a read's map in ~0.3-2.5 ms).
 */
const AT_ONCE_MS = 3;
/** Weight of a new observation in a signature's running time. */
const LEARN = 0.3;
/** Signatures remembered at most (a loop has a handful). */
const MAX_SIGNATURES = 512;
/** Milliseconds between Dawn's polls while a paced wait asks. */
const POLL_MS = 1;

type Immediate = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
/** Paced waits asking now, and the setImmediate they replaced. */
let gentle = 0;
let immediate: Immediate | undefined;

/** Dawn's tick: an anonymous native function (user callbacks are JavaScript, or bound and named so). */
function isNativeTick(f: unknown): boolean {
  return typeof f === 'function' && f.name === '' && Function.prototype.toString.call(f).includes('[native code]');
}

/**
 * Awaits `ask()` with Dawn's event polling spaced POLL_MS apart rather than run back to back on
 * setImmediate. Other callers of setImmediate are passed straight through. A no-op where there is
 * no setImmediate (browsers).
 */
export async function pollGently<T>(ask: () => Promise<T>): Promise<T> {
  const g = globalThis as { setImmediate?: Immediate };
  if (typeof g.setImmediate !== 'function') return ask();
  if (gentle++ === 0) {
    const original = g.setImmediate;
    immediate = original;
    g.setImmediate = (callback, ...args) => (isNativeTick(callback) ? setTimeout(callback, POLL_MS, ...args) : original(callback, ...args));
  }
  try {
    return await ask();
  } finally {
    if (--gentle === 0) {
      g.setImmediate = immediate;
      immediate = undefined;
    }
  }
}

interface Submit {
  seq: number;
  at: number;
  signature: number;
}

/** Folds one dispatch (pipeline id, workgroups) into a submit's running signature. */
export function signDispatch(signature: number, pipeline: number, x: number, y: number, z: number): number {
  let h = signature ^ Math.imul(pipeline + 1, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) ^ Math.imul(x, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 13), 0x27d4eb2f) ^ Math.imul(y * 65599 + z, 0x165667b1);
  return (h ^ (h >>> 16)) >>> 0;
}

export class WaitPacer {
  /** GPU milliseconds each signature took, learned from waits. */
  private took = new Map<number, number>();
  /** Submits not yet known to be done, oldest first. */
  private inFlight: Submit[] = [];
  private seq = 0;
  /** When the last wait found everything it covered done. */
  private doneAt = -Infinity;

  /** Sleep before asking; false: ask at once. */
  constructor(public sleepFirst: boolean) {}

  /** Notes a submit whose work has `signature` (see signDispatch). */
  submitted(signature: number, now = performance.now()): void {
    this.inFlight.push({ seq: ++this.seq, at: now, signature });
  }

  /** When the submits so far should be done: each starts at its submit or the end of the one before. */
  expectedEnd(): number {
    let t = this.doneAt;
    for (const s of this.inFlight) t = Math.max(t, s.at) + (this.took.get(s.signature) ?? 0);
    return t;
  }

  /** How long a wait that starts at `now` sleeps before asking, in ms (0: it asks at once). */
  plannedSleep(now = performance.now()): number {
    if (!this.sleepFirst) return 0;
    const left = this.expectedEnd() - now;
    const ms = left - Math.max(MIN_POLL_MS, (1 - SLEEP_SHARE) * left);
    return ms > 0 ? ms : 0;
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
    let out: T;
    try {
      out = this.sleepFirst ? await pollGently(ask) : await ask();
    } catch (e) {
      // A failed wait (a lost device, a destroyed buffer) says nothing about the time: forget the
      // work it covered, so that no later wait expects it.
      this.takeCovered(covered);
      throw e;
    }
    this.settled(covered, asked, performance.now());
    return out;
  }

  /** Removes the submits up to `covered` from those in flight and returns them. */
  private takeCovered(covered: number): Submit[] {
    const mine = this.inFlight.filter((s) => s.seq <= covered);
    this.inFlight = this.inFlight.filter((s) => s.seq > covered);
    return mine;
  }

  /**
   * The submits up to `covered` are done: asked at `asked`, answered at `done`. Their GPU time ran
   * from the first one's start (its submit, or the end of what an earlier wait saw done) to `done`,
   * or, answered at once, to no later than `asked`. A wait that covered one submit teaches its
   * signature; one that covered several scales the known ones and gives the unknown ones the rest.
   * Each signature learns once, from its share per submit: a timing loop submits the same work
   * many times between waits, and learning from each copy in turn compounded the estimate.
   */
  private settled(covered: number, asked: number, done: number): void {
    const mine = this.takeCovered(covered);
    if (mine.length === 0) return;
    const copies = new Map<number, number>();
    for (const s of mine) copies.set(s.signature, (copies.get(s.signature) ?? 0) + 1);
    // Forget everything before reading what is known, so that the counts below stay true.
    if (this.took.size + copies.size > MAX_SIGNATURES) this.took.clear();
    const start = Math.max(mine[0]!.at, this.doneAt);
    const atOnce = done - asked <= AT_ONCE_MS;
    this.doneAt = atOnce ? asked : done;
    const span = (atOnce ? asked : done) - start;
    let expected = 0;
    let unknown = 0;
    for (const [signature, n] of copies) {
      const was = this.took.get(signature);
      if (was === undefined) unknown += n;
      else expected += n * was;
    }
    for (const signature of copies.keys()) {
      const was = this.took.get(signature);
      if (was === undefined) {
        // Unknown work: its share of what the known work left, or (answered at once) nothing
        // learned beyond an upper bound, which is no reason to sleep.
        if (!atOnce) this.took.set(signature, Math.max(0, span - expected) / unknown);
      } else if (atOnce) {
        // Done before asked: it ran faster than expected; take no more than the bound now.
        this.took.set(signature, Math.min(was, (was / Math.max(expected, 1e-9)) * span * 0.9));
      } else {
        const share = unknown > 0 ? was : (was / Math.max(expected, 1e-9)) * span;
        this.took.set(signature, (1 - LEARN) * was + LEARN * share);
      }
    }
  }
}
