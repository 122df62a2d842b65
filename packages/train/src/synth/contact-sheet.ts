// A grid of square RGB images, enlarged by pixel repetition, for looking at samples by eye.

export interface ContactSheet {
  width: number;
  height: number;
  /** (H, W, 3) interleaved 8-bit RGB. */
  rgb: Uint8Array;
}

/** Tiles `images` (each `size`×`size`) into rows of `cols`, each pixel repeated `zoom` times. */
export function contactSheet(images: readonly Uint8Array[], size: number, cols: number, zoom = 1, gap = 2): ContactSheet {
  const rows = Math.ceil(images.length / cols);
  const cell = size * zoom + gap;
  const width = cols * cell + gap;
  const height = rows * cell + gap;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  images.forEach((img, k) => {
    if (img.length !== size * size * 3) throw new Error(`contactSheet: image ${k} has ${img.length} bytes, expected ${size}x${size}x3`);
    const ox = gap + (k % cols) * cell;
    const oy = gap + Math.floor(k / cols) * cell;
    for (let y = 0; y < size * zoom; y++) {
      for (let x = 0; x < size * zoom; x++) {
        const s = (Math.floor(y / zoom) * size + Math.floor(x / zoom)) * 3;
        const d = ((oy + y) * width + ox + x) * 3;
        rgb[d] = img[s]!;
        rgb[d + 1] = img[s + 1]!;
        rgb[d + 2] = img[s + 2]!;
      }
    }
  });
  return { width, height, rgb };
}
