import { describe, expect, it } from 'vitest';
import { testDevice } from '@mpfgvc/kernels/testing';
import { SUITES, runSuites } from './index.js';

describe('bench smoke', () => {
  it('every suite produces rows at toy sizes, and the check suite verifies the kernels', async () => {
    const dev = await testDevice();
    const rows = await runSuites(dev, ['all'], { quick: true });
    for (const suite of Object.keys(SUITES)) expect(rows.some((r) => r.suite === suite), suite).toBe(true);
    // The host-side rows ride in the train suite: the synthetic birds at both sizes.
    expect(rows.filter((r) => r.name === 'synthetic birds generation').map((r) => `${r.suite} ${r.shape}`)).toEqual(['train 32²', 'train 64²']);
    // Where the adapter has timestamps, each training step says which kernels take its time.
    if (dev.has('timestamp-query')) expect(rows.some((r) => r.suite === 'train' && r.metric === 'GPU time (profiled)' && r.name.endsWith(': matmul'))).toBe(true);
    for (const r of rows) {
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['suite', 'name', 'shape', 'metric', 'value', 'unit']));
      if (r.suite === 'check') expect(r.note, `${r.name}: ${r.value}`).toBe('ok');
      // The pool holds no more after the last step than after the warm-up.
      else if (r.metric === 'growth') expect(r.value, `${r.name}: ${r.note}`).toBe(0);
      else if (!r.note?.startsWith('missing')) expect(Number.isFinite(r.value) && r.value > 0, `${r.suite} ${r.name}`).toBe(true);
    }
  });
});
