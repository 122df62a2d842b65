// Float64 references for patch extraction and the strided patch convolution, as naive loops.
import type { F64 } from './array.js';

/** Rows of P×P patches of images (B, C, H, W) in (c, ky, kx) order: (B, ⌊H/P⌋·⌊W/P⌋, C·P·P). */
export function im2colRef(img: F64, patch: number): F64 {
  const [b, c, h, w] = img.shape as [number, number, number, number];
  const gh = Math.floor(h / patch);
  const gw = Math.floor(w / patch);
  const cols = c * patch * patch;
  const out = new Float64Array(b * gh * gw * cols);
  let o = 0;
  for (let bi = 0; bi < b; bi++)
    for (let py = 0; py < gh; py++)
      for (let px = 0; px < gw; px++)
        for (let ci = 0; ci < c; ci++)
          for (let ky = 0; ky < patch; ky++)
            for (let kx = 0; kx < patch; kx++) out[o++] = img.data[((bi * c + ci) * h + py * patch + ky) * w + px * patch + kx]!;
  return { data: out, shape: [b, gh * gw, cols] };
}

/** Gradient of im2colRef: each patch value returns to its pixel; cut-off borders get 0. */
export function col2imRef(cols: F64, imageShape: number[], patch: number): F64 {
  const [b, c, h, w] = imageShape as [number, number, number, number];
  const gw = Math.floor(w / patch);
  const out = new Float64Array(b * c * h * w);
  for (let bi = 0; bi < b; bi++)
    for (let ci = 0; ci < c; ci++)
      for (let y = 0; y < Math.floor(h / patch) * patch; y++)
        for (let x = 0; x < gw * patch; x++) {
          const n = Math.floor(y / patch) * gw + Math.floor(x / patch);
          const col = (ci * patch + (y % patch)) * patch + (x % patch);
          out[((bi * c + ci) * h + y) * w + x] = cols.data[(bi * cols.shape[1]! + n) * cols.shape[2]! + col]!;
        }
  return { data: out, shape: [...imageShape] };
}

/** Conv2d with kernel = stride = P, output as tokens: y[b, py·gw + px, o] = bias[o] + Σ w[o, c, ky, kx]·img[b, c, py·P + ky, px·P + kx]. */
export function patchConvRef(img: F64, weight: F64, bias: F64 | null): F64 {
  const [b, c, h, w] = img.shape as [number, number, number, number];
  const [d, , patch] = weight.shape as [number, number, number, number];
  const gh = Math.floor(h / patch);
  const gw = Math.floor(w / patch);
  const out = new Float64Array(b * gh * gw * d);
  for (let bi = 0; bi < b; bi++)
    for (let py = 0; py < gh; py++)
      for (let px = 0; px < gw; px++)
        for (let o = 0; o < d; o++) {
          let acc = bias ? bias.data[o]! : 0;
          for (let ci = 0; ci < c; ci++)
            for (let ky = 0; ky < patch; ky++)
              for (let kx = 0; kx < patch; kx++) {
                acc += weight.data[((o * c + ci) * patch + ky) * patch + kx]! * img.data[((bi * c + ci) * h + py * patch + ky) * w + px * patch + kx]!;
              }
          out[((bi * gh + py) * gw + px) * d + o] = acc;
        }
  return { data: out, shape: [b, gh * gw, d] };
}

/** Gradients of patchConvRef given dy (B, N, D): dimg, dweight, dbias. */
export function patchConvBackwardRef(img: F64, weight: F64, dy: F64): { dimg: F64; dweight: F64; dbias: F64 } {
  const [b, c, h, w] = img.shape as [number, number, number, number];
  const [d, , patch] = weight.shape as [number, number, number, number];
  const gh = Math.floor(h / patch);
  const gw = Math.floor(w / patch);
  const dimg = new Float64Array(img.data.length);
  const dweight = new Float64Array(weight.data.length);
  const dbias = new Float64Array(d);
  for (let bi = 0; bi < b; bi++)
    for (let py = 0; py < gh; py++)
      for (let px = 0; px < gw; px++)
        for (let o = 0; o < d; o++) {
          const g = dy.data[((bi * gh + py) * gw + px) * d + o]!;
          dbias[o]! += g;
          for (let ci = 0; ci < c; ci++)
            for (let ky = 0; ky < patch; ky++)
              for (let kx = 0; kx < patch; kx++) {
                const wi = ((o * c + ci) * patch + ky) * patch + kx;
                const ii = ((bi * c + ci) * h + py * patch + ky) * w + px * patch + kx;
                dweight[wi]! += g * img.data[ii]!;
                dimg[ii]! += g * weight.data[wi]!;
              }
        }
  return { dimg: { data: dimg, shape: [...img.shape] }, dweight: { data: dweight, shape: [...weight.shape] }, dbias: { data: dbias, shape: [d] } };
}
