import { describe, expect, it } from 'vitest';
import { testDevice } from '@mpfgvc/kernels/testing';
import { runSuites } from './index.js';

describe('bench smoke', () => {
  it('every suite produces rows at toy sizes', async () => {
    const dev = await testDevice();
    const rows = await runSuites(dev, ['all'], { quick: true });
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['suite', 'name', 'shape', 'metric', 'value', 'unit']));
      expect(Number.isFinite(r.value) && r.value > 0).toBe(true);
    }
  });
});
