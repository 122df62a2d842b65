import { f16ToF32, f32ToF16 } from '@mpfgvc/kernels';

// The safetensors format: an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the raw little-endian data. Everything in the header
// is validated before any data is used; errors name the source, the key and what was expected.

export type SafetensorsDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface TensorEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** The raw bytes (a view into the file's buffer, not a copy). */
  bytes: Uint8Array;
}

export interface Safetensors {
  source: string;
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

export class WeightsError extends Error {
  override name = 'WeightsError';
}

/** 16-bit little-endian values (copied: the data may sit at an odd offset in the file). */
function u16(dv: DataView, n: number): Uint16Array {
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true);
  return out;
}

const MAX_HEADER = 100 * 1024 * 1024;

/** Parses a safetensors file held in memory. `source` names it in errors (a path). */
export function parseSafetensors(buf: Uint8Array, source = 'safetensors'): Safetensors {
  if (buf.byteLength < 8) throw new WeightsError(`${source}: ${buf.byteLength} bytes is too short for a safetensors file`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER || 8 + headerLen > buf.byteLength) {
    throw new WeightsError(`${source}: header length ${headerLen} does not fit in the file (${buf.byteLength} bytes); not a safetensors file?`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new WeightsError(`${source}: header is not valid JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw new WeightsError(`${source}: header is not a JSON object`);
  const dataStart = 8 + headerLen;
  const dataLen = buf.byteLength - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const ranges: [number, number, string][] = [];
  for (const [key, raw] of Object.entries(header)) {
    if (key === '__metadata__') {
      if (!raw || typeof raw !== 'object' || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        throw new WeightsError(`${source}: __metadata__ must map names to strings`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = e?.dtype as SafetensorsDType;
    if (!(typeof dtype === 'string' && dtype in DTYPE_BYTES)) throw new WeightsError(`${source}: tensor '${key}' has unsupported dtype ${JSON.stringify(e?.dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new WeightsError(`${source}: tensor '${key}' has invalid shape ${JSON.stringify(shape)}`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0) || off[0] > off[1] || off[1] > dataLen) {
      throw new WeightsError(`${source}: tensor '${key}' has data_offsets ${JSON.stringify(off)} outside the ${dataLen} data bytes`);
    }
    const n = (shape as number[]).reduce((a, b) => a * b, 1);
    const want = n * DTYPE_BYTES[dtype];
    if (off[1] - off[0] !== want) {
      throw new WeightsError(`${source}: tensor '${key}' ${dtype}[${(shape as number[]).join(', ')}] needs ${want} bytes, its data_offsets span ${off[1] - off[0]}`);
    }
    ranges.push([off[0], off[1], key]);
    tensors.set(key, { dtype, shape: shape as number[], bytes: buf.subarray(dataStart + off[0], dataStart + off[1]) });
  }
  // The specification: the data section is covered by the tensors exactly, with no gap or overlap
  // (a shortened header length otherwise shifts every tensor by a few bytes unnoticed).
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let end = 0;
  for (const [start, stop, key] of ranges) {
    if (start < end) throw new WeightsError(`${source}: tensor '${key}' overlaps the one before it (data_offsets [${start}, ${stop}])`);
    if (start > end) throw new WeightsError(`${source}: bytes ${end}..${start} of the data section belong to no tensor (before '${key}'); damaged or not a safetensors file`);
    end = stop;
  }
  if (end !== dataLen) throw new WeightsError(`${source}: the tensors cover ${end} of the ${dataLen} data bytes; the header length or the offsets are wrong`);
  return { source, tensors, metadata };
}

function bf16ToF32(src: Uint8Array, out: Float32Array): void {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < out.length; i++) u[i] = (src[2 * i]! | (src[2 * i + 1]! << 8)) << 16;
}

/** A tensor's values as f32 (from F32, F16, BF16 or F64), checked against an expected shape when given. */
export function readF32(st: Safetensors, key: string, expectShape?: readonly number[]): Float32Array {
  const e = st.tensors.get(key);
  if (!e) throw new WeightsError(`${st.source}: missing tensor '${key}'`);
  if (expectShape && (expectShape.length !== e.shape.length || expectShape.some((d, i) => d !== e.shape[i]))) {
    throw new WeightsError(`${st.source}: tensor '${key}' has shape [${e.shape.join(', ')}], expected [${expectShape.join(', ')}]`);
  }
  const n = e.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const dv = new DataView(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength);
  switch (e.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      break;
    case 'F16':
      out.set(f16ToF32(u16(dv, n)));
      break;
    case 'BF16':
      bf16ToF32(e.bytes, out);
      break;
    default:
      throw new WeightsError(`${st.source}: tensor '${key}' is ${e.dtype}, expected a float dtype`);
  }
  return out;
}

/** An integer tensor's values (I32, or I64 within the i32 range) as Int32Array. */
export function readI32(st: Safetensors, key: string, expectShape?: readonly number[]): Int32Array {
  const e = st.tensors.get(key);
  if (!e) throw new WeightsError(`${st.source}: missing tensor '${key}'`);
  if (expectShape && (expectShape.length !== e.shape.length || expectShape.some((d, i) => d !== e.shape[i]))) {
    throw new WeightsError(`${st.source}: tensor '${key}' has shape [${e.shape.join(', ')}], expected [${expectShape.join(', ')}]`);
  }
  const dv = new DataView(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength);
  const n = e.shape.reduce((a, b) => a * b, 1);
  const out = new Int32Array(n);
  if (e.dtype === 'I32') for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
  else if (e.dtype === 'I64') {
    for (let i = 0; i < n; i++) {
      const v = dv.getBigInt64(8 * i, true);
      if (v < -2147483648n || v > 2147483647n) throw new WeightsError(`${st.source}: tensor '${key}' value ${v} does not fit in i32`);
      out[i] = Number(v);
    }
  } else throw new WeightsError(`${st.source}: tensor '${key}' is ${e.dtype}, expected I32 or I64`);
  return out;
}

/** A tensor's values as 16-bit floats (raw f16 bits), converting F32/BF16/F64 with round-to-nearest-even. */
export function readF16Bits(st: Safetensors, key: string, expectShape?: readonly number[]): Uint16Array {
  const e = st.tensors.get(key);
  if (e?.dtype === 'F16' && (!expectShape || (expectShape.length === e.shape.length && expectShape.every((d, i) => d === e.shape[i])))) {
    return u16(new DataView(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength), e.bytes.byteLength / 2);
  }
  return f32ToF16(readF32(st, key, expectShape));
}

export interface WriteEntry {
  dtype: 'F32' | 'F16' | 'I32' | 'I64';
  shape: readonly number[];
  data: Float32Array | Uint16Array | Int32Array | BigInt64Array;
}

/** Serialises tensors (keys sorted, header padded to 8 bytes as the reference writer does). */
export function serializeSafetensors(entries: Record<string, WriteEntry>, metadata?: Record<string, string>): Uint8Array {
  const keys = Object.keys(entries).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const k of keys) {
    const e = entries[k]!;
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (n !== e.data.length) throw new WeightsError(`serialize: tensor '${k}' has ${e.data.length} values for shape [${e.shape.join(', ')}]`);
    const bytes = n * DTYPE_BYTES[e.dtype];
    header[k] = { dtype: e.dtype, shape: [...e.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const k of keys) {
    const d = entries[k]!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}
