import { readFileSync } from 'node:fs';
import { deflateSync, inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { MatError, readMat5 } from './mat5.js';

// The fixtures were written by scipy.io.savemat, an independent writer:
//   dogs_*_list.mat: Stanford Dogs' variables (file_list, annotation_list: cell {N,1} of
//   strings; labels: double [N,1]), do_compression=True.
//   uncompressed.mat: names = {'ab', 'Zürich'} (cell 1x2), v = [1.5 -2; 3 4], u8 = uint8([7 8 9]),
//   s = struct (skipped), c = char ['abc'; 'xyz'].
const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));

describe('readMat5', () => {
  it('reads the compressed Stanford Dogs lists', () => {
    const vars = readMat5(fixture('dogs_train_list.mat'));
    const files = vars.get('file_list');
    const labels = vars.get('labels');
    expect(files?.type).toBe('cell');
    expect(labels).toEqual({ type: 'numeric', dims: [4, 1], data: new Float64Array([1, 1, 2, 2]) });
    if (files?.type !== 'cell') return;
    expect(files.dims).toEqual([4, 1]);
    expect(files.cells.map((c) => (c.type === 'char' ? c.rows[0] : c.type))).toEqual([
      'n02085620-Chihuahua/n02085620_1.jpg',
      'n02085620-Chihuahua/n02085620_2.jpg',
      'n02085782-Japanese_spaniel/n02085782_1.jpg',
      'n02085782-Japanese_spaniel/n02085782_2.jpg',
    ]);
    expect(vars.get('annotation_list')?.type).toBe('cell');
  });

  it('reads uncompressed numeric, char and cell arrays and skips structs', () => {
    const vars = readMat5(fixture('uncompressed.mat'));
    const names = vars.get('names');
    expect(names?.type === 'cell' && names.cells.map((c) => c.type === 'char' && c.rows[0])).toEqual(['ab', 'Zürich']);
    // Column-major: [1.5 -2; 3 4] is stored 1.5, 3, -2, 4.
    expect(vars.get('v')).toEqual({ type: 'numeric', dims: [2, 2], data: new Float64Array([1.5, 3, -2, 4]) });
    expect(vars.get('u8')).toEqual({ type: 'numeric', dims: [1, 3], data: new Float64Array([7, 8, 9]) });
    expect(vars.get('s')).toEqual({ type: 'unsupported', mxClass: 2 });
    expect(vars.get('c')).toEqual({ type: 'char', dims: [2, 3], rows: ['abc', 'xyz'] });
  });

  it('reads a big-endian file', () => {
    // Hand-assembled: header with 'MI', one compressed miMATRIX 'x' = double [2].
    const be = (words: number[]) => {
      const b = Buffer.alloc(words.length * 4);
      words.forEach((w, i) => b.writeUInt32BE(w >>> 0, i * 4));
      return b;
    };
    const value = Buffer.alloc(8);
    value.writeDoubleBE(2);
    const body = Buffer.concat([
      be([6, 8, 6, 0]), // array flags: miUINT32, 8 bytes, class double
      be([5, 8, 1, 1]), // dims: miINT32 [1, 1]
      be([(1 << 16) | 1]), Buffer.from('x\0\0\0'), // name as a small element
      be([9, 8]), value, // real part: miDOUBLE
    ]);
    const matrix = Buffer.concat([be([14, body.length]), body]);
    const deflated = deflateSync(matrix);
    const header = Buffer.alloc(128, 32);
    header.write('MATLAB 5.0 MAT-file', 0, 'latin1');
    header.writeUInt16BE(0x0100, 124);
    header.write('MI', 126, 'latin1');
    const file = Buffer.concat([header, be([15, deflated.length]), deflated]);
    expect(readMat5(file).get('x')).toEqual({ type: 'numeric', dims: [1, 1], data: new Float64Array([2]) });
  });

  it('rejects a file that is not MAT v5', () => {
    const v73 = Buffer.alloc(200, 0);
    v73.write('MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: ...', 0, 'latin1');
    expect(() => readMat5(v73)).toThrow(/not a level-5 MAT file \(header 'MATLAB 7.3/);
    expect(() => readMat5(Buffer.alloc(10))).toThrow(/shorter than its 128-byte header/);
  });

  it('checks every size against the bytes: each single-bit flip of the lists gives a value or a MatError, at once', () => {
    // The lists are one compressed element: flip the bits of what it inflates to, then deflate again.
    const file = fixture('dogs_train_list.mat');
    const n = file.readUInt32LE(132);
    const inflated = inflateSync(file.subarray(136, 136 + n));
    const started = performance.now();
    let refused = 0;
    for (let byte = 0; byte < inflated.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(inflated);
        flipped[byte]! ^= 1 << bit;
        const deflated = deflateSync(flipped);
        const head = Buffer.alloc(8);
        head.writeUInt32LE(15, 0);
        head.writeUInt32LE(deflated.length, 4);
        try {
          readMat5(Buffer.concat([file.subarray(0, 128), head, deflated]));
        } catch (e) {
          expect(e).toBeInstanceOf(MatError);
          refused++;
        }
      }
    }
    expect(refused).toBeGreaterThan(0);
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('refuses dimensions the data cannot hold and compressed data that inflates without bound', () => {
    const header = Buffer.alloc(128, 32);
    header.write('IM', 126, 'latin1');
    const le = (words: number[]) => {
      const b = Buffer.alloc(words.length * 4);
      words.forEach((w, i) => b.writeUInt32LE(w >>> 0, i * 4));
      return b;
    };
    // A char array claiming 65536 x 65536 characters in 8 bytes of data.
    const body = Buffer.concat([le([6, 8, 4, 0]), le([5, 8, 65536, 65536]), le([(1 << 16) | 1]), Buffer.from('x\0\0\0'), le([(8 << 16) | 16]), Buffer.from('ab\0\0')]);
    const huge = Buffer.concat([header, le([14, body.length]), body]);
    expect(() => readMat5(huge)).toThrow("MAT file: 'x' has dimensions [65536,65536] (4294967296 values) but only 8 bytes of data");
    const bomb = deflateSync(Buffer.alloc(300 * 2 ** 20));
    expect(() => readMat5(Buffer.concat([header, le([15, bomb.length]), bomb]))).toThrow(/MAT file: compressed element at byte 128 does not inflate/);
  });
});

