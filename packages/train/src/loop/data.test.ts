import { describe, expect, it } from 'vitest';
import type { DataConfig } from './config.js';
import { type DataBatch, holdOut, openRunData } from './data.js';

const ROW = 3 * 16 * 16;
const rowHex = (b: DataBatch, k: number) => Buffer.from(b.rows.slice(k * ROW, (k + 1) * ROW).buffer).toString('hex');

async function collect(it: AsyncGenerator<DataBatch>): Promise<DataBatch[]> {
  const out: DataBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

function synth(fresh: boolean) {
  const cfg: DataConfig = { kind: 'synth', numClasses: 3, trainPerClass: 4, testPerClass: 2, valPerClass: 2, seed: 5, fresh };
  return openRunData(cfg, { imageSize: 16, normalization: 'imagenet', seed: 9, strict: true });
}

describe('synthetic training data', () => {
  it('repeats the same images every epoch unless fresh', async () => {
    const batches = await collect(synth(false).train(4, false, { epoch: 0, index: 0 }, 2));
    expect(batches).toHaveLength(6);
    const rows = (e: number) => batches.filter((b) => b.position.epoch === e).flatMap((b) => [...b.indices].map((id, k) => [id, b.rows.subarray(k * ROW, (k + 1) * ROW)] as const));
    const first = new Map(rows(0));
    for (const [id, r] of rows(1)) expect(r).toEqual(first.get(id));
  });

  it('with fresh, draws new images after the first epoch, none of them a test image, deterministically', async () => {
    const data = synth(true);
    const plain = await collect(synth(false).train(4, false, { epoch: 0, index: 0 }, 3));
    const fresh = await collect(data.train(4, false, { epoch: 0, index: 0 }, 3));
    expect(fresh.map((b) => [b.position, [...b.indices], [...b.labels]])).toEqual(plain.map((b) => [b.position, [...b.indices], [...b.labels]]));
    const pixels = (bs: DataBatch[]) => bs.map((b) => Buffer.from(b.rows.buffer, b.rows.byteOffset, b.rows.byteLength).toString('hex'));
    // Epoch 0 is the training split; epochs 1 and 2 are new and differ from each other.
    expect(pixels(fresh.slice(0, 3))).toEqual(pixels(plain.slice(0, 3)));
    const seen = new Set(pixels(fresh));
    expect(seen.size).toBe(9);
    const test = await collect(data.test(6));
    const testRows = new Set(test.flatMap((b) => Array.from({ length: b.size }, (_, k) => rowHex(b, k))));
    expect(testRows.size).toBe(6);
    for (const b of fresh) for (let k = 0; k < b.size; k++) expect(testRows.has(rowHex(b, k))).toBe(false);
    // A run resumed in the middle of epoch 1 sees exactly the batches an uninterrupted one saw.
    const resumed = await collect(synth(true).train(4, false, fresh[4]!.position, 3));
    expect(pixels(resumed)).toEqual(pixels(fresh.slice(4)));
    await data.close();
  });
});

describe('validation split', () => {
  it('holds out a seeded share of each class (at least one of a class with two or more), in dataset order', () => {
    const samples = [...Array.from({ length: 20 }, (_, i) => ({ path: `a${i}`, label: 0 })), ...Array.from({ length: 3 }, (_, i) => ({ path: `b${i}`, label: 1 })), { path: 'c0', label: 2 }];
    const { train, val } = holdOut(samples, 0.1, 7);
    expect(val.filter((s) => s.label === 0)).toHaveLength(2);
    expect(val.filter((s) => s.label === 1)).toHaveLength(1);
    expect(val.filter((s) => s.label === 2)).toHaveLength(0);
    expect(train.length + val.length).toBe(samples.length);
    expect(new Set([...train, ...val].map((s) => s.path)).size).toBe(samples.length);
    expect(val.map((s) => samples.indexOf(s))).toEqual([...val.map((s) => samples.indexOf(s))].sort((a, b) => a - b));
    expect(holdOut(samples, 0.1, 7)).toEqual({ train, val });
    expect(holdOut(samples, 0.1, 8).val).not.toEqual(val);
    expect(holdOut(samples, 0, 7)).toEqual({ train: samples, val: [] });
  });

  it('synthetic validation birds are new images of the same classes', async () => {
    const data = synth(false);
    expect(data.valCount).toBe(6);
    const [val] = await collect(data.val(6));
    const [train] = await collect(data.trainPlain(12));
    const [test] = await collect(data.test(6));
    expect(Array.from(val!.labels).sort()).toEqual([0, 0, 1, 1, 2, 2]);
    const seen = new Set([...Array.from({ length: 12 }, (_, k) => rowHex(train!, k)), ...Array.from({ length: 6 }, (_, k) => rowHex(test!, k))]);
    for (let k = 0; k < 6; k++) expect(seen.has(rowHex(val!, k))).toBe(false);
  });
});

