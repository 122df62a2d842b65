// Input normalisation: the statistics by name and the pixels-to-CHW conversion. No Node modules:
// the browser app prepares its images with the same code.

export type Rgb = [number, number, number];

export const IMAGENET_NORMALIZATION: { mean: Rgb; std: Rgb } = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
export const CLIP_NORMALIZATION: { mean: Rgb; std: Rgb } = {
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

/** Inception's (and ViT-in21k's, BiT's): every channel to [-1, 1]. */
export const INCEPTION_NORMALIZATION: { mean: Rgb; std: Rgb } = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

export const NORMALIZATION_NAMES = ['imagenet', 'clip', 'inception'] as const;

/** Input normalisation: by name, or the mean and std a checkpoint's preprocessor config gives. */
export type InputNormalization = (typeof NORMALIZATION_NAMES)[number] | { mean: Rgb; std: Rgb };

export function normalizationStats(n: InputNormalization): { mean: Rgb; std: Rgb } {
  if (n === 'imagenet') return IMAGENET_NORMALIZATION;
  if (n === 'clip') return CLIP_NORMALIZATION;
  if (n === 'inception') return INCEPTION_NORMALIZATION;
  return n;
}

/**
 * A normalisation as a command line writes it: a name (imagenet, clip, inception) or
 * `m,m,m/s,s,s` (three means and three positive standard deviations, on the 0–1 scale).
 */
export function parseNormalization(text: string): InputNormalization {
  const name = NORMALIZATION_NAMES.find((n) => n === text);
  if (name) return name;
  const parts = text.split('/');
  const triple = (p: string | undefined) => p?.split(',').map((v) => (v.trim() === '' ? Number.NaN : Number(v)));
  const [mean, std] = [triple(parts[0]), triple(parts[1])];
  if (parts.length !== 2 || mean?.length !== 3 || std?.length !== 3 || !mean.every(Number.isFinite) || !std.every((v) => Number.isFinite(v) && v > 0)) {
    throw new Error(`normalisation '${text}': expected ${NORMALIZATION_NAMES.join(', ')} or mean,mean,mean/std,std,std (e.g. 0.5,0.5,0.5/0.5,0.5,0.5; std > 0)`);
  }
  return { mean: mean as Rgb, std: std as Rgb };
}

/**
 * Writes HWC uint8 pixels (size x size) as normalised CHW float32 at out[offset..], mirrored
 * left-right when `flip`: out[c][y][x] = (p[y][x'][c] / 255 - mean[c]) / std[c].
 */
export function normalizeInto(pixels: Uint8Array, size: number, flip: boolean, mean: Rgb, std: Rgb, out: Float32Array, offset: number): void {
  const plane = size * size;
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * std[c]!);
    const bias = -mean[c]! / std[c]!;
    const base = offset + c * plane;
    for (let y = 0; y < size; y++) {
      const row = y * size;
      for (let x = 0; x < size; x++) {
        const sx = flip ? size - 1 - x : x;
        out[base + row + x] = pixels[(row + sx) * 3 + c]! * scale + bias;
      }
    }
  }
}
