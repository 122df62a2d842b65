// PNG encoding through sharp (a dependency of this package for image decoding anyway).
import sharp from 'sharp';

/** Encodes (H, W, 3) interleaved 8-bit RGB as a PNG file's bytes. */
export async function encodePng(rgb: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  if (rgb.length !== width * height * 3) throw new Error(`encodePng: ${rgb.length} bytes is not ${width}x${height}x3`);
  const buf = await sharp(rgb, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 6 }).toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}
