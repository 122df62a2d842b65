// A minimal reader of MATLAB level-5 MAT files (the format of Stanford Dogs' train_list.mat and
// test_list.mat): numeric and char arrays and cell arrays of them, compressed (miCOMPRESSED, what
// MATLAB 7 writes by default) or not, either byte order. Structs, objects and sparse arrays are
// skipped by their byte length; that is all the lists need.
//
// Every size in the file is checked against the bytes that hold it before anything is allocated
// or looped over: a flipped bit in a dimension must give one MatError, not gigabytes of strings.
import { inflateSync } from 'node:zlib';

/** A file that is not a MAT v5 file we can read, or a damaged one. */
export class MatError extends Error {
  override name = 'MatError';
}

/** Bytes all compressed elements of one file may inflate to (the Stanford Dogs lists inflate to < 1 MB). */
const MAX_INFLATED = 256 * 1024 * 1024;
/** Cells within cells deeper than this are refused (the lists nest one level). */
const MAX_DEPTH = 16;

export type MatValue =
  | { type: 'numeric'; dims: number[]; data: Float64Array }
  | { type: 'char'; dims: number[]; /** One string per row. */ rows: string[] }
  | { type: 'cell'; dims: number[]; cells: MatValue[] }
  | { type: 'unsupported'; mxClass: number };

// Data element types (miXXX) and array classes (mxXXX_CLASS) of the format.
const MI_INT8 = 1, MI_UINT8 = 2, MI_INT16 = 3, MI_UINT16 = 4, MI_INT32 = 5, MI_UINT32 = 6, MI_SINGLE = 7, MI_DOUBLE = 9;
const MI_INT64 = 12, MI_UINT64 = 13, MI_MATRIX = 14, MI_COMPRESSED = 15, MI_UTF8 = 16, MI_UTF16 = 17, MI_UTF32 = 18;
const MX_CELL = 1, MX_CHAR = 4, MX_DOUBLE = 6, MX_UINT64 = 15;

interface Element {
  type: number;
  data: DataView;
  /** Offset of the next element. */
  next: number;
}

class Reader {
  constructor(
    private readonly view: DataView,
    private readonly le: boolean,
    private readonly depth = 0,
  ) {}

  u32(o: number): number {
    if (o + 4 > this.view.byteLength) throw new MatError(`MAT file: element header at byte ${o} runs past the end`);
    return this.view.getUint32(o, this.le);
  }

  element(o: number): Element {
    const v = this.view;
    const w0 = this.u32(o);
    // Small data element: byte count in the high half of the first word, data in the second.
    if (w0 >>> 16 !== 0) {
      const n = w0 >>> 16;
      if (n > 4 || o + 8 > v.byteLength) throw new MatError(`MAT file: small element at byte ${o} claims ${n} bytes`);
      return { type: w0 & 0xffff, data: new DataView(v.buffer, v.byteOffset + o + 4, n), next: o + 8 };
    }
    const n = this.u32(o + 4);
    if (o + 8 + n > v.byteLength) throw new MatError(`MAT file: element at byte ${o} runs past the end (${n} bytes)`);
    // Compressed elements are not padded; all others are padded to 8 bytes.
    const next = w0 === MI_COMPRESSED ? o + 8 + n : o + 8 + Math.ceil(n / 8) * 8;
    return { type: w0, data: new DataView(v.buffer, v.byteOffset + o + 8, n), next };
  }

  /** Element values as numbers (also for the 64-bit types, which lists never exceed 2^53 in). */
  numbers(e: Element): Float64Array {
    const d = e.data;
    const size = ({ [MI_INT8]: 1, [MI_UINT8]: 1, [MI_UTF8]: 1, [MI_INT16]: 2, [MI_UINT16]: 2, [MI_UTF16]: 2, [MI_INT32]: 4, [MI_UINT32]: 4, [MI_UTF32]: 4, [MI_SINGLE]: 4, [MI_DOUBLE]: 8, [MI_INT64]: 8, [MI_UINT64]: 8 } as Record<number, number>)[e.type];
    if (size === undefined) throw new MatError(`MAT file: data type ${e.type} is not numeric`);
    const n = Math.floor(d.byteLength / size);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const o = i * size;
      switch (e.type) {
        case MI_INT8: out[i] = d.getInt8(o); break;
        case MI_UINT8: case MI_UTF8: out[i] = d.getUint8(o); break;
        case MI_INT16: out[i] = d.getInt16(o, this.le); break;
        case MI_UINT16: case MI_UTF16: out[i] = d.getUint16(o, this.le); break;
        case MI_INT32: out[i] = d.getInt32(o, this.le); break;
        case MI_UINT32: case MI_UTF32: out[i] = d.getUint32(o, this.le); break;
        case MI_SINGLE: out[i] = d.getFloat32(o, this.le); break;
        case MI_DOUBLE: out[i] = d.getFloat64(o, this.le); break;
        case MI_INT64: out[i] = Number(d.getBigInt64(o, this.le)); break;
        case MI_UINT64: out[i] = Number(d.getBigUint64(o, this.le)); break;
      }
    }
    return out;
  }

  /** A miMATRIX element's value and its variable name. */
  matrix(e: Element): { name: string; value: MatValue } {
    if (e.data.byteLength === 0) return { name: '', value: { type: 'numeric', dims: [0, 0], data: new Float64Array(0) } };
    if (this.depth >= MAX_DEPTH) throw new MatError(`MAT file: arrays nested more than ${MAX_DEPTH} deep`);
    const sub = new Reader(e.data, this.le, this.depth + 1);
    const flags = sub.element(0);
    if (flags.data.byteLength < 4) throw new MatError('MAT file: array flags shorter than 4 bytes');
    const mxClass = flags.data.getUint32(0, this.le) & 0xff;
    const dimsEl = sub.element(flags.next);
    const dims = Array.from(sub.numbers(dimsEl));
    if (dims.length === 0 || dims.length > 32 || !dims.every((d) => Number.isInteger(d) && d >= 0)) throw new MatError(`MAT file: array dimensions [${dims.slice(0, 8)}] are not sizes`);
    const nameEl = sub.element(dimsEl.next);
    const name = Buffer.from(nameEl.data.buffer, nameEl.data.byteOffset, nameEl.data.byteLength).toString('latin1');
    const count = dims.reduce((a, b) => a * b, 1);
    // Every value takes at least one byte of the array's own data (a cell at least an 8-byte header).
    const room = e.data.byteLength - nameEl.next;
    if (count > room) throw new MatError(`MAT file: '${name}' has dimensions [${dims}] (${count} values) but only ${room} bytes of data`);
    if (mxClass === MX_CELL) {
      if (count * 8 > room) throw new MatError(`MAT file: cell array '${name}' of ${count} cells in ${room} bytes`);
      const cells: MatValue[] = [];
      let o = nameEl.next;
      for (let i = 0; i < count; i++) {
        const c = sub.element(o);
        if (c.type !== MI_MATRIX) throw new MatError(`MAT file: cell ${i} of '${name}' is data type ${c.type}, not a matrix`);
        cells.push(sub.matrix(c).value);
        o = c.next;
      }
      return { name, value: { type: 'cell', dims, cells } };
    }
    if (mxClass === MX_CHAR) {
      const dataEl = sub.element(nameEl.next);
      const codes = dataEl.type === MI_UTF8 ? Array.from(new TextDecoder().decode(dataEl.data)).map((c) => c.codePointAt(0)!) : Array.from(sub.numbers(dataEl));
      if (codes.length !== count) throw new MatError(`MAT file: char array '${name}' has ${codes.length} characters for dimensions [${dims}]`);
      // Column-major: character (r, c) is at r + c * rows.
      const nRows = dims[0] ?? 0;
      const nCols = count / Math.max(nRows, 1);
      const rows: string[] = [];
      for (let r = 0; r < nRows; r++) {
        let s = '';
        for (let c = 0; c < nCols; c++) {
          const code = codes[r + c * nRows]!;
          if (!(Number.isInteger(code) && code >= 0 && code <= 0x10ffff)) throw new MatError(`MAT file: char array '${name}' holds ${code}, not a character code`);
          s += String.fromCodePoint(code);
        }
        rows.push(s);
      }
      return { name, value: { type: 'char', dims, rows } };
    }
    if (mxClass >= MX_DOUBLE && mxClass <= MX_UINT64) {
      const data = sub.numbers(sub.element(nameEl.next));
      if (data.length !== count) throw new MatError(`MAT file: '${name}' has ${data.length} values for dims [${dims}]`);
      return { name, value: { type: 'numeric', dims, data } };
    }
    return { name, value: { type: 'unsupported', mxClass } };
  }
}

/** The variables of a MAT v5 file by name. */
export function readMat5(bytes: Uint8Array): Map<string, MatValue> {
  if (bytes.byteLength < 128) throw new MatError('MAT file: shorter than its 128-byte header');
  const header = Buffer.from(bytes.buffer, bytes.byteOffset, 128);
  const endian = header.toString('latin1', 126, 128);
  if (endian !== 'IM' && endian !== 'MI') {
    const text = header.toString('latin1', 0, 116).trim();
    throw new MatError(`MAT file: not a level-5 MAT file (header '${text.slice(0, 40)}')`);
  }
  const vars = new Map<string, MatValue>();
  let inflated = 0;
  const walk = (view: DataView, start: number, depth: number): void => {
    const r = new Reader(view, endian === 'IM');
    let o = start;
    while (o + 8 <= view.byteLength) {
      const e = r.element(o);
      if (e.type === MI_COMPRESSED) {
        if (depth > 0) throw new MatError('MAT file: a compressed element inside a compressed element');
        let raw: Buffer;
        try {
          raw = inflateSync(new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength), { maxOutputLength: Math.max(1, MAX_INFLATED - inflated) });
        } catch (err) {
          throw new MatError(`MAT file: compressed element at byte ${o} does not inflate (${(err as Error).message})`);
        }
        inflated += raw.byteLength;
        walk(new DataView(raw.buffer, raw.byteOffset, raw.byteLength), 0, depth + 1);
      } else if (e.type === MI_MATRIX) {
        const { name, value } = r.matrix(e);
        vars.set(name, value);
      }
      o = e.next;
    }
  };
  walk(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), 128, 0);
  return vars;
}
