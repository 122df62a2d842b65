import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, GPUValidationError, type KernelSpec, LINEAR_INDEX, dawnInstance, empty, grid1d, kernelSource, requestDevice, scope, sizeClass, tensor } from './index.js';
import { testDevice } from './testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const IOTA: KernelSpec = {
  name: 'test_iota',
  storage: [{ name: 'Out', access: 'read_write', type: 'array<u32>' }],
  params: [['n', 'u32']],
  workgroupSize: [1],
  code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  Out[i] = i * 3u;
}`,
};

describe('device', () => {
  it('reports the adapter and requests the optional features it has', () => {
    expect(dev.info.name.length).toBeGreaterThan(0);
    expect(dev.info.backend).not.toBe('');
    for (const f of ['shader-f16', 'subgroups', 'timestamp-query'] as const) {
      if (dev.ctx.adapter.features.has(f)) expect(dev.has(f)).toBe(true);
    }
    expect(dev.limits.maxStorageBufferBindingSize).toBe(dev.ctx.adapter.limits.maxStorageBufferBindingSize);
  });

  it("reports the host CPU's vector registers (Linux x86-64: 16 with AVX2, 32 with AVX-512VL)", async () => {
    if (process.platform !== 'linux' || process.arch !== 'x64') return expect(dev.info.hostVectorRegisters).toBe(0);
    const { readFileSync } = await import('node:fs');
    const flags = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)![1]!.split(/\s+/);
    expect(dev.info.hostVectorRegisters).toBe(flags.includes('avx512vl') ? 32 : flags.includes('avx2') ? 16 : 0);
  });

  it('names the available adapters when the one asked for does not exist', async () => {
    const err = await requestDevice({ adapter: 'no-such-gpu-xyz' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^no WebGPU adapter matches adapter=no-such-gpu-xyz; available: \S+/);
    expect((err as Error).message).not.toContain('\n');
  });

  it('opens a further Dawn instance over the same adapter for libraries measured beside ours', async () => {
    const adapter = await (await dawnInstance(dev.info)).requestAdapter();
    expect(adapter?.info.description).toBe(dev.ctx.adapter.info.description);
    expect(adapter?.info.device).toBe(dev.ctx.adapter.info.device);
  });
});

describe('dispatch', () => {
  it('generates bindings and the params struct from the kernel description', () => {
    const src = kernelSource(IOTA);
    expect(src).toContain('@group(0) @binding(0) var<storage, read_write> Out: array<u32>;');
    expect(src).toContain('@group(0) @binding(1) var<uniform> p: Params;');
    expect(src).toContain('override WG_X: u32 = 1u;');
  });

  it('folds grids larger than the per-dimension limit into y', async () => {
    const n = 70_001;
    expect(grid1d(n, 1)[1]).toBeGreaterThan(1);
    const out = empty(dev, [n], 'u32');
    dev.dispatch(IOTA, [out.buffer], [n], grid1d(n, 1));
    const got = (await out.read()) as Uint32Array;
    expect(got[0]).toBe(0);
    expect(got[n - 1]).toBe((n - 1) * 3);
    expect(got.every((v, i) => v === i * 3)).toBe(true);
    out.dispose();
  });

  it('reports a WGSL compile error with the kernel name and the compiler message', async () => {
    const bad: KernelSpec = { ...IOTA, name: 'test_broken', code: 'fn main( {' };
    const out = empty(dev, [4], 'u32');
    dev.dispatch(bad, [out.buffer], [4], [1]);
    const err = await dev.sync().catch((e: Error) => e);
    expect(err).toBeInstanceOf(GPUValidationError);
    expect((err as Error).message).toMatch(/kernel 'test_broken@1' failed to compile: line \d+:\d+: /);
    out.dispose();
  });

  it('caches pipelines and bind groups across repeated dispatches', async () => {
    const out = empty(dev, [16], 'u32');
    dev.dispatch(IOTA, [out.buffer], [16], [16]);
    const before = { ...dev.counts };
    for (let i = 0; i < 10; i++) dev.dispatch(IOTA, [out.buffer], [16], [16]);
    await dev.sync();
    expect(dev.counts.pipelines).toBe(before.pipelines);
    expect(dev.counts.bindGroups).toBe(before.bindGroups);
    expect(dev.counts.dispatches - before.dispatches).toBe(10);
    out.dispose();
  });

  it('records many ops into one submit and reads back only when asked', async () => {
    await dev.sync();
    const submits = dev.counts.submits;
    const x = tensor(dev, [1, 2, 3, 4]);
    const y = scope(() => {
      let t = x;
      for (let i = 0; i < 20; i++) t = scope(() => tensor(dev, [1, 1, 1, 1]).device === dev ? t : t);
      return t;
    });
    expect(y).toBe(x);
    expect(dev.counts.submits).toBe(submits);
    expect(Array.from(await x.read())).toEqual([1, 2, 3, 4]);
    expect(dev.counts.submits).toBe(submits + 1);
    x.dispose();
  });

  it('sends a long recording to the queue in pieces of 64 dispatches, in order', async () => {
    const STEP: KernelSpec = {
      name: 'test_step',
      storage: [{ name: 'X', access: 'read_write', type: 'array<f32>' }],
      params: [['k', 'f32']],
      workgroupSize: [1],
      code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  X[gid.x] = X[gid.x] * 0.5 + p.k;
}`,
    };
    const x = tensor(dev, [1, 0]);
    await dev.sync();
    const submits = dev.counts.submits;
    // x ← x/2 + k for k = 0..149: a piece run out of turn changes the result.
    let want = [1, 0];
    for (let k = 0; k < 150; k++) {
      dev.dispatch(STEP, [x.buffer], [k], [2]);
      want = want.map((v) => Math.fround(v * 0.5 + k));
      if (k === 62) expect(dev.counts.submits).toBe(submits);
      if (k === 63) expect(dev.counts.submits).toBe(submits + 1);
    }
    expect(dev.counts.submits).toBe(submits + 2);
    expect(Array.from(await x.read())).toEqual(want);
    expect(dev.counts.submits).toBe(submits + 3);
    x.dispose();
  });
});

describe('profile', () => {
  it('times each kernel over the dispatches of a call, and the results are the untimed ones', async () => {
    if (!dev.has('timestamp-query')) return;
    const a = empty(dev, [1 << 16], 'u32');
    const b = empty(dev, [64], 'u32');
    const prof = await dev.profile(() => {
      for (let i = 0; i < 3; i++) dev.dispatch(IOTA, [a.buffer], [1 << 16], grid1d(1 << 16, 1));
      dev.dispatch({ ...IOTA, variant: 'small' }, [b.buffer], [64], [64]);
    });
    expect(prof.kernels.map((k) => [k.kernel, k.dispatches])).toEqual(
      expect.arrayContaining([
        ['test_iota@1', 3],
        ['test_iota:small@1', 1],
      ]),
    );
    expect(prof.kernels).toHaveLength(2);
    // Dawn quantises timestamps: the 64-invocation dispatch may read as 0 ms, the three 64K ones not.
    for (const k of prof.kernels) expect(k.ms).toBeGreaterThanOrEqual(0);
    expect(prof.kernels.find((k) => k.kernel === 'test_iota@1')!.ms).toBeGreaterThan(0);
    expect(prof.totalMs).toBeCloseTo(prof.kernels[0]!.ms + prof.kernels[1]!.ms, 9);
    expect(prof.untimed).toBe(0);
    const out = await a.read();
    expect([out[0], out[12345], out[65535]]).toEqual([0, 3 * 12345, 3 * 65535]);
    // Past the capacity, dispatches run untimed; after the call, dispatches are shared again.
    const over = await dev.profile(() => {
      for (let i = 0; i < 3; i++) dev.dispatch(IOTA, [b.buffer], [64], [64]);
    }, 2);
    expect(over.kernels[0]!.dispatches).toBe(2);
    expect(over.untimed).toBe(1);
    // A call that throws leaves the device unprofiled and working.
    await expect(
      dev.profile(() => {
        dev.dispatch(IOTA, [b.buffer], [64], [64]);
        throw new Error('inside');
      }),
    ).rejects.toThrow('inside');
    await expect(dev.profile(() => undefined, 4096)).rejects.toThrow(/capacity 4096 must be an integer in \[1, 2048\]/);
    dev.dispatch(IOTA, [b.buffer], [64], [64]);
    await dev.sync();
    expect((await b.read())[63]).toBe(3 * 63);
    a.dispose();
    b.dispose();
  });
});

describe('read-back', () => {
  it('reads strided views exactly, gathered on the host without a kernel', async () => {
    const values = Array.from({ length: 24 }, (_, i) => i * 1.5 - 7); // exact in f16 too
    const views = [
      { what: '(2, 3, 4) permuted to (4, 2, 3)', shape: [4, 2, 3], strides: [1, 12, 4], offset: 0 },
      { what: 'columns 1 and 2 of a (6, 4) matrix', shape: [6, 2], strides: [4, 1], offset: 1 },
      { what: 'row 2 of a (6, 4) matrix broadcast over 3 rows', shape: [3, 4], strides: [0, 1], offset: 8 },
      { what: 'every third element from 5', shape: [6], strides: [3], offset: 5 },
    ];
    const gather = (src: number[], v: (typeof views)[number]) =>
      Array.from({ length: v.shape.reduce((a, b) => a * b, 1) }, (_, k) => {
        let at = v.offset;
        for (let i = v.shape.length - 1, r = k; i >= 0; r = Math.floor(r / v.shape[i]!), i--) at += (r % v.shape[i]!) * v.strides[i]!;
        return src[at]!;
      });
    for (const dtype of ['f32', 'f16', 'i32'] as const) {
      const src = dtype === 'i32' ? values.map((x) => Math.round(x * 2)) : values;
      const t = tensor(dev, src, [24], { dtype });
      const dispatches = dev.counts.dispatches;
      for (const v of views) {
        const view = t.view(v.shape, v.strides, v.offset);
        expect(view.isContiguous()).toBe(false);
        expect(Array.from(await view.read()), `${dtype} ${v.what}`).toEqual(gather(src, v));
        view.dispose();
      }
      expect(dev.counts.dispatches).toBe(dispatches);
      t.dispose();
    }
  });
});

describe('buffer pool', () => {
  it('size classes waste at most 25%', () => {
    for (const n of [1, 255, 257, 1000, 4097, 123_457, 9_999_999]) {
      const c = sizeClass(n);
      expect(c).toBeGreaterThanOrEqual(n);
      expect(c).toBeLessThanOrEqual(Math.max(256, n * 1.25 + 16));
    }
  });

  it('reuses released buffers: allocation is flat across repeated work', async () => {
    const step = () => scope(() => {
      const a = tensor(dev, new Float32Array(1000).fill(1));
      const b = tensor(dev, new Float32Array(1000).fill(2));
      return void [a, b];
    });
    step();
    await dev.sync();
    const after1 = dev.pool.stats();
    for (let i = 0; i < 20; i++) step();
    await dev.sync();
    const after20 = dev.pool.stats();
    expect(after20.allocated).toBe(after1.allocated);
    expect(after20.inUse).toBe(after1.inUse);
  });

  it('refuses a tensor larger than a storage binding can hold, naming the limit', () => {
    const max = Math.min(dev.limits.maxBufferSize, dev.limits.maxStorageBufferBindingSize);
    expect(() => empty(dev, [max / 4 + 1], 'f32', 'huge')).toThrow(/huge: a tensor of \d+ bytes exceeds the largest storage binding this adapter allows/);
  });

  it('a tensor just under the binding limit works end to end', async () => {
    const max = Math.min(dev.limits.maxBufferSize, dev.limits.maxStorageBufferBindingSize);
    const n = Math.floor(max / 4) - 3;
    const t = empty(dev, [n], 'u32', 'near-limit');
    dev.dispatch(IOTA, [t.buffer], [n], grid1d(n, 1, dev.limits.maxComputeWorkgroupsPerDimension));
    const got = (await t.read()) as Uint32Array;
    expect(got[n - 1]).toBe(((n - 1) * 3) >>> 0);
    expect(got[12345]).toBe(12345 * 3);
    t.dispose();
  });

  it('names the tensor used after dispose', () => {
    const t = tensor(dev, [1, 2], [2], { name: 'head.weight' });
    t.dispose();
    expect(() => t.buffer).toThrow(/tensor 'head.weight' \[2\] used after dispose\(\)/);
  });
});
