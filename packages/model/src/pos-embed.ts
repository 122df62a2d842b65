// Position embeddings trained at one patch grid (224/16 = 14×14) used at another (448/16 = 28×28):
// the grid part is resized bicubically, the CLS entry kept as is. Runs once per checkpoint load,
// on the host in float64, with PyTorch's F.interpolate(mode='bicubic', align_corners=False)
// semantics so that a checkpoint resized here equals one resized by timm's or HF's Python code.

/** Keys' cubic convolution constant; PyTorch's (and OpenCV's) choice. */
const A = -0.75;

/** Weights of the taps at floor(x)-1 .. floor(x)+2 for fractional offset t ∈ [0, 1). */
function cubicWeights(t: number): [number, number, number, number] {
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1; // |x| ≤ 1
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; // 1 < |x| < 2
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/** For each output index, its four clamped source indices and weights (align_corners=False, no antialias). */
function taps(inSize: number, outSize: number): { idx: Int32Array; w: Float64Array } {
  const idx = new Int32Array(outSize * 4);
  const w = new Float64Array(outSize * 4);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    // Not clamped at 0: PyTorch's cubic path lets the source coordinate go negative and clamps taps instead.
    const src = (o + 0.5) * scale - 0.5;
    const i0 = Math.floor(src);
    const cw = cubicWeights(src - i0);
    for (let k = 0; k < 4; k++) {
      idx[o * 4 + k] = Math.min(inSize - 1, Math.max(0, i0 - 1 + k));
      w[o * 4 + k] = cw[k]!;
    }
  }
  return { idx, w };
}

/**
 * Bicubic resize of a channels-last grid (h0, w0, C) to (h, w, C) in float64, as PyTorch's
 * F.interpolate(x, size=(h, w), mode='bicubic', align_corners=False) on (C, h0, w0).
 */
export function bicubicResize(src: ArrayLike<number>, from: readonly [number, number], to: readonly [number, number], channels: number): Float64Array {
  const [h0, w0] = from;
  const [h, w] = to;
  if (src.length !== h0 * w0 * channels) throw new Error(`bicubicResize: ${src.length} values for a ${h0}x${w0}x${channels} grid`);
  const ty = taps(h0, h);
  const tx = taps(w0, w);
  // Along x first: (h0, w, C), then along y: (h, w, C).
  const mid = new Float64Array(h0 * w * channels);
  for (let y = 0; y < h0; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let k = 0; k < 4; k++) s += tx.w[x * 4 + k]! * src[(y * w0 + tx.idx[x * 4 + k]!) * channels + c]!;
        mid[(y * w + x) * channels + c] = s;
      }
    }
  }
  const row = w * channels;
  const dst = new Float64Array(h * row);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < row; x++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += ty.w[y * 4 + k]! * mid[ty.idx[y * 4 + k]! * row + x]!;
      dst[y * row + x] = s;
    }
  }
  return dst;
}

/** The side of a square grid of n patches; throws unless n is a perfect square. */
export function squareGrid(n: number, what: string): number {
  const side = Math.round(Math.sqrt(n));
  if (side * side !== n) throw new Error(`${what}: ${n} patch positions do not form a square grid`);
  return side;
}

/**
 * Position embeddings (1 + h0·w0, D) — the CLS entry, then the grid in row-major order — resized
 * to (1 + h·w, D). The source grid is square unless `from` says otherwise. Returns the input
 * itself when the grids already match.
 */
export function resizePosEmbed(pos: Float32Array, dim: number, to: readonly [number, number], from?: readonly [number, number]): Float32Array {
  if (pos.length % dim !== 0) throw new Error(`resizePosEmbed: ${pos.length} values are not a whole number of width-${dim} rows`);
  const n0 = pos.length / dim - 1;
  const [h0, w0] = from ?? [squareGrid(n0, 'resizePosEmbed'), squareGrid(n0, 'resizePosEmbed')];
  if (h0 * w0 !== n0) throw new Error(`resizePosEmbed: ${n0} patch positions do not form a ${h0}x${w0} grid`);
  const [h, w] = to;
  if (h === h0 && w === w0) return pos;
  const grid = bicubicResize(pos.subarray(dim), [h0, w0], [h, w], dim);
  const out = new Float32Array((1 + h * w) * dim);
  out.set(pos.subarray(0, dim));
  out.set(grid, dim);
  return out;
}
