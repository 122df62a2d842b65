import { describe, expect, it } from 'vitest';
import { type EpochPosition, EpochOrder } from './epoch-order.js';

const all = (o: EpochOrder, from: EpochPosition, until: number) => [...o.batches(from, until)].map((b) => ({ ...b, ids: Array.from(b.ids) }));

describe('EpochOrder', () => {
  it('visits a seeded permutation per epoch', () => {
    const o = new EpochOrder(10, 3, { seed: 42 });
    const p0 = Array.from(o.permutation(0));
    expect([...p0].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(o.permutation(1))).not.toEqual(p0);
    expect(Array.from(new EpochOrder(10, 3, { seed: 42 }).permutation(0))).toEqual(p0);
    expect(Array.from(new EpochOrder(10, 3, { seed: 43 }).permutation(0))).not.toEqual(p0);
    expect(Array.from(new EpochOrder(4, 3, { seed: 42, shuffle: false }).permutation(5))).toEqual([0, 1, 2, 3]);
  });

  it('cuts epochs into batches, with or without the last partial one', () => {
    const o = new EpochOrder(10, 3, { seed: 1 });
    const batches = all(o, { epoch: 0, index: 0 }, 1);
    expect(batches.map((b) => b.ids.length)).toEqual([3, 3, 3, 1]);
    expect(batches.flatMap((b) => b.ids)).toEqual(Array.from(o.permutation(0)));
    expect(batches.map((b) => b.next)).toEqual([{ epoch: 0, index: 3 }, { epoch: 0, index: 6 }, { epoch: 0, index: 9 }, { epoch: 1, index: 0 }]);
    const dropping = new EpochOrder(10, 3, { seed: 1, dropLast: true });
    expect([dropping.epochLength, dropping.batchesPerEpoch, o.batchesPerEpoch]).toEqual([9, 3, 4]);
    expect(all(dropping, { epoch: 0, index: 0 }, 1).at(-1)!.next).toEqual({ epoch: 1, index: 0 });
  });

  it('resumes from a saved position with exactly the same batches', () => {
    const o = new EpochOrder(23, 4, { seed: 7 });
    const full = all(o, { epoch: 0, index: 0 }, 3);
    // Interrupted after the 8th batch (in epoch 1): a fresh order continues from its `next`.
    const saved = full[7]!.next;
    expect(saved).toEqual({ epoch: 1, index: 8 });
    const resumed = all(new EpochOrder(23, 4, { seed: 7 }), saved, 3);
    expect(resumed).toEqual(full.slice(8));
  });

  it('rejects positions outside the epoch', () => {
    const o = new EpochOrder(5, 2, { seed: 0 });
    expect(() => o.batchAt({ epoch: 0, index: 5 })).toThrow('EpochOrder: position (epoch 0, index 5) is outside an epoch of 5 samples');
    expect(() => new EpochOrder(5, 0, { seed: 0 })).toThrow(/batchSize must be a positive integer/);
    expect(all(new EpochOrder(0, 2, { seed: 0 }), { epoch: 0, index: 0 }, 4)).toEqual([]);
  });
});
