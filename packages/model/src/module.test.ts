import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, Rng } from '@mpfgvc/kernels';
import { testDevice } from '@mpfgvc/kernels/testing';
import { Module } from './index.js';

class Linear extends Module {
  constructor(dev: Device, rng: Rng, nin: number, nout: number) {
    super(dev, rng);
    this.param('weight', [nout, nin], { normal: 0.02 });
    this.param('bias', [nout], 'zeros');
  }
}

class Net extends Module {
  constructor(dev: Device, rng: Rng) {
    super(dev, rng);
    this.child('fc1', new Linear(dev, rng, 3, 4));
    this.child('fc2', new Linear(dev, rng, 4, 2));
  }
}

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

describe('Module', () => {
  it('names parameters by dotted path and round-trips the state', async () => {
    const a = new Net(dev, new Rng(1));
    expect(a.namedParameters().map(([n]) => n)).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    const state = await a.stateDict();
    const b = new Net(dev, new Rng(2));
    b.load((name) => state.get(name)?.data, 'a');
    const sb = await b.stateDict();
    for (const [k, v] of state) expect(Array.from(sb.get(k)!.data)).toEqual(Array.from(v.data));
  });

  it('names the missing parameters', () => {
    const a = new Net(dev, new Rng(1));
    expect(() => a.load((name) => (name.startsWith('fc1') ? new Float32Array(name.endsWith('weight') ? 12 : 4) : undefined), 'ckpt.safetensors')).toThrow(
      "ckpt.safetensors: missing 2 parameter(s): 'fc2.weight', 'fc2.bias'",
    );
  });

  it('freezes and unfreezes', () => {
    const a = new Net(dev, new Rng(1));
    expect(a.setTrainable(false).parameters().every((t) => !t.requiresGrad)).toBe(true);
    expect(a.setTrainable(true).parameters().every((t) => t.requiresGrad)).toBe(true);
  });
});
