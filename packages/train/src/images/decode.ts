// Decoding any file sharp reads (JPEG, PNG, WebP, TIFF, ...) to 8-bit RGB, the way PIL's
// Image.open(p).convert('RGB') feeds torchvision: EXIF orientation applied, grayscale expanded to
// three channels, CMYK converted through sharp's colour management, alpha dropped (not blended
// onto a background, as PIL's convert does), 16-bit samples reduced to 8.
import sharp from 'sharp';

/** Interleaved RGB, row-major: pixel (x, y) channel c at (y * width + x) * 3 + c. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export async function decodeRgb(input: string | Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp(input).autoOrient().toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`decodeRgb: expected 3 channels after conversion, got ${info.channels}`);
  return { data, width: info.width, height: info.height };
}
