import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { contactSheet } from './contact-sheet.js';
import { encodePng } from './png.js';

describe('contactSheet and encodePng', () => {
  it('tiles zoomed images on a white grid and round-trips through PNG', async () => {
    const a = new Uint8Array(2 * 2 * 3).map((_, i) => i * 10);
    const b = new Uint8Array(2 * 2 * 3).fill(7);
    const sheet = contactSheet([a, b, a], 2, 2, 3, 1);
    // 2 columns of (2*3 + 1) px plus the leading gap; 2 rows likewise.
    expect([sheet.width, sheet.height]).toEqual([15, 15]);
    const at = (x: number, y: number) => Array.from(sheet.rgb.subarray((y * 15 + x) * 3, (y * 15 + x) * 3 + 3));
    expect(at(0, 0)).toEqual([255, 255, 255]);
    expect(at(1, 1)).toEqual([0, 10, 20]);
    expect(at(6, 6)).toEqual([90, 100, 110]);
    expect(at(8, 1)).toEqual([7, 7, 7]);
    expect(at(9, 9)).toEqual([255, 255, 255]);
    const png = await encodePng(sheet.rgb, sheet.width, sheet.height);
    expect(Array.from(png.subarray(0, 4))).toEqual([0x89, 0x50, 0x4e, 0x47]);
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(Buffer.compare(data, Buffer.from(sheet.rgb))).toBe(0);
    expect(() => contactSheet([new Uint8Array(5)], 2, 1)).toThrow(/contactSheet: image 0/);
    await expect(encodePng(new Uint8Array(5), 2, 2)).rejects.toThrow(/encodePng/);
  });
});
