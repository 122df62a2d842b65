import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, backward, cast, f16ToF32, f32ToF16, mul, scope, sum, tensor } from '../index.js';
import { launchCast } from '../raw.js';
import { assertClose, testDevice } from '../testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

describe('cast f32 <-> f16', () => {
  it('host conversion rounds to nearest even and keeps specials', () => {
    const xs = new Float32Array([0, -0, 1, -2.5, 65504, 65520, 1e-8, 6.1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, Infinity, NaN]);
    const back = f16ToF32(f32ToF16(xs));
    expect(Array.from(back.slice(0, 5))).toEqual([0, -0, 1, -2.5, 65504]);
    expect(back[5]).toBe(Infinity); // rounds past the largest half
    expect(back[6]).toBe(0);
    expect(Math.abs(back[7]! - 6.1e-5)).toBeLessThan(1e-7);
    expect(back[8]).toBe(1); // tie to even
    expect(back[9]).toBe(1 + 2 * 2 ** -10);
    expect(back[10]).toBe(Infinity);
    expect(Number.isNaN(back[11])).toBe(true);
  });

  it('GPU cast matches the host conversion', async (ctx) => {
    if (!dev.has('shader-f16')) ctx.skip();
    const n = 10_007;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = Math.sin(i) * 10 ** ((i % 9) - 4);
    const h = launchCast(tensor(dev, x), 'f16');
    expect(h.dtype).toBe('f16');
    const want = f16ToF32(f32ToF16(x));
    assertClose(await h.read(), want, { atol: 0, rtol: 0 }, 'f32->f16');
    const back = launchCast(h, 'f32');
    assertClose(await back.read(), want, { atol: 0, rtol: 0 }, 'f16->f32');
  });

  it('the gradient of a cast comes back in the input dtype', async (ctx) => {
    if (!dev.has('shader-f16')) ctx.skip();
    const x = tensor(dev, [1, 2, 3], [3], { requiresGrad: true });
    const w = tensor(dev, [0.5, 0.25, 4], [3]);
    scope(() => backward(sum(mul(cast(cast(x, 'f16'), 'f32'), w))));
    expect(x.grad!.dtype).toBe('f32');
    assertClose(await x.grad!.read(), [0.5, 0.25, 4], {}, 'grad');
  });
});
