import { describe, expect, it } from 'vitest';
import { f32ToF16 } from '@mpfgvc/kernels';
import { WeightsError, parseSafetensors, readF16Bits, readF32, serializeSafetensors } from './safetensors.js';

function rawFile(header: object, data: Uint8Array): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips F32, F16 and I32 tensors and metadata exactly', () => {
    const w = new Float32Array([1.5, -2, 3.25, 1e-20, 7, 8]);
    const bytes = serializeSafetensors(
      {
        'b.weight': { dtype: 'F32', shape: [2, 3], data: w },
        'a.half': { dtype: 'F16', shape: [3], data: f32ToF16(new Float32Array([0.5, -1, 2048])) },
        ids: { dtype: 'I32', shape: [2], data: new Int32Array([7, -1]) },
      },
      { format: 'pt' },
    );
    const st = parseSafetensors(bytes, 'x.safetensors');
    expect(st.metadata).toEqual({ format: 'pt' });
    expect([...st.tensors.keys()].sort()).toEqual(['a.half', 'b.weight', 'ids']);
    expect(Array.from(readF32(st, 'b.weight', [2, 3]))).toEqual(Array.from(w));
    expect(Array.from(readF32(st, 'a.half'))).toEqual([0.5, -1, 2048]);
    expect(Array.from(readF16Bits(st, 'b.weight').slice(0, 2))).toEqual(Array.from(f32ToF16(new Float32Array([1.5, -2])))); 
    expect((8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))) % 8).toBe(0);
  });

  it('reads BF16', () => {
    // bf16 of 1.0 = 0x3f80, of -2.5 = 0xc020
    const st = parseSafetensors(rawFile({ t: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] } }, new Uint8Array([0x80, 0x3f, 0x20, 0xc0])));
    expect(Array.from(readF32(st, 't'))).toEqual([1, -2.5]);
  });

  it('names the key and the shapes when a tensor does not match', () => {
    const st = parseSafetensors(serializeSafetensors({ 'head.weight': { dtype: 'F32', shape: [3, 4], data: new Float32Array(12) } }), 'model.safetensors');
    expect(() => readF32(st, 'head.weight', [4, 3])).toThrow("model.safetensors: tensor 'head.weight' has shape [3, 4], expected [4, 3]");
    expect(() => readF32(st, 'head.bias')).toThrow("model.safetensors: missing tensor 'head.bias'");
  });

  it('rejects corrupt headers with a message naming the problem', () => {
    const bad = (h: object, n: number) => () => parseSafetensors(rawFile(h, new Uint8Array(n)), 'f');
    expect(bad({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 8)).toThrow("f: tensor 't' F32[2] needs 8 bytes, its data_offsets span 4");
    expect(bad({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4)).toThrow(/outside the 4 data bytes/);
    expect(bad({ t: { dtype: 'Q4', shape: [2], data_offsets: [0, 1] } }, 4)).toThrow(/unsupported dtype "Q4"/);
    expect(bad({ a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [2], data_offsets: [2, 4] } }, 4)).toThrow(/overlap/);
    expect(() => parseSafetensors(new Uint8Array(4), 'tiny')).toThrow(WeightsError);
    const junk = new Uint8Array(16);
    new DataView(junk.buffer).setBigUint64(0, 1000n, true);
    expect(() => parseSafetensors(junk, 'junk')).toThrow(/header length 1000 does not fit/);
  });

  it('requires the data section to be covered exactly: a header length shortened by 1-6 bytes is refused, not read shifted', () => {
    const good = serializeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array([1, 2, 3]) }, b: { dtype: 'F32', shape: [2], data: new Float32Array([4, 5]) } }, { format: 'pt' });
    const headerLen = Number(new DataView(good.buffer).getBigUint64(0, true));
    for (let k = 1; k <= 6; k++) {
      const bad = Uint8Array.from(good);
      new DataView(bad.buffer).setBigUint64(0, BigInt(headerLen - k), true);
      expect(() => parseSafetensors(bad, 'short.safetensors'), `header shortened by ${k}`).toThrow(WeightsError);
    }
    // JSON that stays valid once shortened (the padding spaces): the exact-coverage rule is what refuses it.
    const padded = rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, pad: '          ' }, new Uint8Array(4));
    expect(() => parseSafetensors(padded.subarray(0, padded.length - 1), 'x')).toThrow("x: tensor 'a' has data_offsets [0,4] outside the 3 data bytes");
    const gap = rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8));
    expect(() => parseSafetensors(gap, 'gap.safetensors')).toThrow("gap.safetensors: bytes 0..4 of the data section belong to no tensor (before 'a'); damaged or not a safetensors file");
    const tail = rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(12));
    expect(() => parseSafetensors(tail, 'tail.safetensors')).toThrow('tail.safetensors: the tensors cover 4 of the 12 data bytes; the header length or the offsets are wrong');
    const meta = rawFile({ __metadata__: { config: { depth: 1 } } }, new Uint8Array(0));
    expect(() => parseSafetensors(meta, 'm.safetensors')).toThrow('m.safetensors: __metadata__ must map names to strings');
  });
});
