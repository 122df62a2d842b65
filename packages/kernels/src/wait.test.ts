import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, tensor } from './index.js';
import { launchBinary } from './raw.js';
import { isCpuAdapter } from './ops/adapter.js';
import { testDevice } from './testing/index.js';
import { WaitPacer, pollGently, signDispatch } from './wait.js';

const after = <T>(ms: number, value: T) => () => new Promise<T>((r) => setTimeout(() => r(value), ms));

describe('WaitPacer', () => {
  const STEP = 7;
  const OTHER = 8;

  it('asks at once about work it has not seen done before', async () => {
    const p = new WaitPacer(true);
    expect(p.plannedSleep()).toBe(0);
    p.submitted(STEP);
    expect(p.plannedSleep()).toBe(0);
    expect(await p.wait(after(40, 'x'))).toBe('x');
    p.submitted(OTHER);
    expect(p.plannedSleep()).toBe(0);
  });

  it('sleeps most of what the same work took before, and polls the rest', async () => {
    const p = new WaitPacer(true);
    p.submitted(STEP);
    const t0 = performance.now();
    await p.wait(after(60, 0));
    const took = performance.now() - t0;
    p.submitted(STEP);
    const now = performance.now();
    // 0.85 of it, less what has passed since the submit; at least 8 ms is polled.
    expect(p.plannedSleep(now)).toBeGreaterThan(0.85 * took - 3);
    expect(p.plannedSleep(now)).toBeLessThan(Math.min(0.85 * took, took - 8) + 3);
    expect(p.plannedSleep(now + 20)).toBeLessThan(p.plannedSleep(now) - 15);
    // Short work is not slept at all: under 8 ms of it would be left to poll.
    expect(p.plannedSleep(now + took - 5)).toBe(0);
  });

  it('expects a submit to start where the one before it ends (pipelined steps)', async () => {
    const p = new WaitPacer(true);
    p.submitted(STEP);
    await p.wait(after(40, 0));
    // Step n is submitted and its read issued, then step n + 1 is submitted before the read
    // settles (as the trainer does).
    const t0 = performance.now();
    p.submitted(STEP, t0);
    const one = p.expectedEnd() - t0;
    const readN = p.wait(after(40, 0));
    p.submitted(STEP, t0 + 5);
    expect(p.expectedEnd() - t0).toBeCloseTo(2 * one, 0);
    await readN;
    // The wait for step n covered only it: step n + 1 is still expected, about one step from now.
    const left = p.expectedEnd() - performance.now();
    expect(left).toBeGreaterThan(0.4 * one);
    expect(left).toBeLessThan(1.6 * one);
  });

  it('learns at once that known work got faster when it finds it done before asking', async () => {
    const p = new WaitPacer(true);
    p.submitted(STEP);
    await p.wait(after(100, 0));
    p.submitted(STEP);
    const t0 = performance.now();
    await p.wait(() => Promise.resolve(0)); // done when asked, after the sleep
    const bound = performance.now() - t0;
    p.submitted(STEP);
    expect(p.expectedEnd() - performance.now()).toBeLessThanOrEqual(0.9 * bound + 1);
  });

  it('learns once per kind of work from a wait that covered many submits of it (a timing loop)', async () => {
    const p = new WaitPacer(true);
    p.submitted(STEP);
    await p.wait(after(5, 0));
    // 40 submits of the same work, then one wait: each is worth a 40th of the time it took.
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) p.submitted(STEP);
      const t0 = performance.now();
      await p.wait(after(80, 0));
      const span = performance.now() - t0;
      p.submitted(STEP);
      const one = p.expectedEnd() - performance.now();
      expect(one).toBeGreaterThan(0);
      expect(one).toBeLessThan(span / 40 + 10);
    }
  });

  it('forgets the work a failed wait covered', async () => {
    const p = new WaitPacer(true);
    p.submitted(STEP);
    await p.wait(after(40, 0));
    p.submitted(STEP);
    expect(p.expectedEnd() - performance.now()).toBeGreaterThan(20);
    await expect(p.wait(() => Promise.reject(new Error('lost')))).rejects.toThrow('lost');
    expect(p.plannedSleep()).toBe(0);
    expect(p.expectedEnd()).toBeLessThan(performance.now());
  });

  it('never sleeps when told not to (browsers, GPUs)', async () => {
    const p = new WaitPacer(false);
    p.submitted(STEP);
    await p.wait(after(30, 0));
    p.submitted(STEP);
    expect(p.plannedSleep()).toBe(0);
  });

  it('signs a submit by its kernels and workgroup counts, in order', () => {
    const sign = (list: number[][]) => list.reduce((h, [id, x, y, z]) => signDispatch(h, id!, x!, y!, z!), 0);
    const a = sign([[0, 4, 1, 1], [1, 16, 2, 1]]);
    expect(sign([[0, 4, 1, 1], [1, 16, 2, 1]])).toBe(a);
    for (const other of [[[1, 16, 2, 1], [0, 4, 1, 1]], [[0, 4, 1, 1], [1, 16, 1, 2]], [[0, 4, 1, 1], [2, 16, 2, 1]], [[0, 4, 1, 1]]]) {
      expect(sign(other)).not.toBe(a);
    }
  });
});

describe('pollGently', () => {
  type Immediate = (cb: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
  const g = globalThis as unknown as { setImmediate: Immediate };
  // An anonymous native function, as Dawn's tick is.
  const nativeTick = Function.prototype as unknown as () => void;

  it("spaces native ticks by a timer while it asks, passes JavaScript callbacks through, and puts setImmediate back", async () => {
    const original = g.setImmediate;
    let inside: { tick: unknown; js: unknown; bound: unknown } | undefined;
    const ran: string[] = [];
    await pollGently(async () => {
      inside = {
        tick: g.setImmediate(nativeTick),
        js: g.setImmediate(() => ran.push('js')),
        bound: g.setImmediate(function named() {}.bind(null)),
      };
      await new Promise((r) => setTimeout(r, 5));
    });
    expect(inside!.tick!.constructor.name).toBe('Timeout');
    expect(inside!.js!.constructor.name).toBe('Immediate');
    expect(inside!.bound!.constructor.name).toBe('Immediate');
    expect(ran).toEqual(['js']);
    expect(g.setImmediate).toBe(original);
    expect((g.setImmediate(nativeTick) as { constructor: { name: string } }).constructor.name).toBe('Immediate');
  });

  it('keeps ticks spaced until the last of overlapping asks settles, also when one fails', async () => {
    const original = g.setImmediate;
    let release!: () => void;
    const long = pollGently(() => new Promise<void>((r) => (release = r)));
    await expect(pollGently(() => Promise.reject(new Error('lost')))).rejects.toThrow('lost');
    expect(g.setImmediate).not.toBe(original);
    expect((g.setImmediate(nativeTick) as { constructor: { name: string } }).constructor.name).toBe('Timeout');
    release();
    await long;
    expect(g.setImmediate).toBe(original);
  });
});

describe('Device waits', () => {
  let dev: Device;
  beforeAll(async () => {
    dev = await testDevice();
  });

  it('sleep before asking under Dawn on a CPU adapter, and give the same results either way', async () => {
    expect(dev.sleepWhileWaiting).toBe(dev.info.backend !== 'browser' && isCpuAdapter(dev));
    const before = dev.sleepWhileWaiting;
    try {
      for (const sleep of [true, false, true]) {
        dev.sleepWhileWaiting = sleep;
        const a = tensor(dev, [1, 2, 3, 4], [4]);
        const b = tensor(dev, [10, 20, 30, 40], [4]);
        const c = launchBinary('add', a, b);
        await dev.sync();
        expect(Array.from(await c.read())).toEqual([11, 22, 33, 44]);
        for (const t of [a, b, c]) t.dispose();
      }
    } finally {
      dev.sleepWhileWaiting = before;
    }
  });
});
