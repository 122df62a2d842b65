import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, tensor } from './index.js';
import { launchBinary } from './raw.js';
import { isCpuAdapter } from './ops/adapter.js';
import { testDevice } from './testing/index.js';
import { WaitPacer } from './wait.js';

const after = <T>(ms: number, value: T) => () => new Promise<T>((r) => setTimeout(() => r(value), ms));

describe('WaitPacer', () => {
  it('asks at once until it has seen a wait, and when nothing was submitted', async () => {
    const p = new WaitPacer(true);
    expect(p.plannedSleep()).toBe(0);
    expect(await p.wait(after(0, 'x'))).toBe('x');
    p.submitted(10);
    expect(p.plannedSleep()).toBe(0);
  });

  it('learns the time per dispatch and sleeps most of the expected time before asking', async () => {
    const p = new WaitPacer(true);
    p.submitted(10);
    const t0 = performance.now();
    await p.wait(after(40, 0));
    const took = performance.now() - t0;
    p.submitted(10);
    const now = performance.now();
    // 10 dispatches took `took`: the next 10 sleep 0.85 of it, less what has passed since the submit.
    expect(p.plannedSleep(now)).toBeGreaterThan(0.85 * took - 3);
    expect(p.plannedSleep(now)).toBeLessThan(0.85 * took + 3);
    expect(p.plannedSleep(now + 20)).toBeCloseTo(p.plannedSleep(now) - 0.85 * 20, 0);
    // A second submit queued behind the first: the wait for both sleeps about twice as long.
    p.submitted(10);
    expect(p.plannedSleep(now)).toBeGreaterThan(2 * 0.85 * took - 6);
  });

  it('expects a submit to start where the one before it ends, and learns from pipelined waits', async () => {
    const p = new WaitPacer(true);
    p.submitted(10);
    await p.wait(after(40, 0));
    // Step n is submitted and its read issued, then step n + 1 is submitted before the read
    // settles (as the trainer does).
    const t0 = performance.now();
    p.submitted(10, t0);
    const one = p.expectedEnd() - t0;
    const readN = p.wait(after(40, 0));
    p.submitted(10, t0 + 5);
    expect(p.expectedEnd() - t0).toBeCloseTo(2 * one, 0);
    await readN;
    // The wait for step n covered only it: step n + 1 is still expected, about one step from now.
    const left = p.expectedEnd() - performance.now();
    expect(left).toBeGreaterThan(0.5 * one);
    expect(left).toBeLessThan(2 * one);
  });

  it('after sleeping past the end of the work, falls to half of what it slept', async () => {
    const p = new WaitPacer(true);
    p.submitted(10);
    await p.wait(after(40, 0));
    p.submitted(10);
    const planned = p.plannedSleep();
    const t0 = performance.now();
    await p.wait(() => Promise.resolve(0)); // done when asked
    const slept = performance.now() - t0;
    expect(slept).toBeGreaterThanOrEqual(planned - 2);
    p.submitted(10);
    expect(p.plannedSleep()).toBeLessThan(0.85 * ((slept + 2) / 2) + 1);
  });

  it('never sleeps when told not to (browsers)', async () => {
    const p = new WaitPacer(false);
    p.submitted(10);
    await p.wait(after(30, 0));
    p.submitted(10);
    expect(p.plannedSleep()).toBe(0);
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
