// Patch extraction for a convolution whose kernel equals its stride (ViT's patch embedding):
// im2col lays each P×P patch out as one row in (c, ky, kx) order, the order a Conv2d weight
// (D, C, P, P) flattens to, so the convolution becomes a matmul with the weight viewed as (D, C·P·P).
// Patches do not overlap, so the backward (col2im) is a pure permutation with zeros where the
// image's right and bottom borders were cut off (H or W not a multiple of P), as Conv2d drops them.
import { type KernelSpec, LINEAR_INDEX, floatType, grid1d, vec4Width } from '../kernel.js';
import { type Tensor, empty, shapeStr } from '../tensor.js';
import { launchCopy } from './elementwise.js';

const WG = 256;

const PARAMS: [string, 'u32'][] = [
  ['n', 'u32'],
  ['c', 'u32'],
  ['h', 'u32'],
  ['w', 'u32'],
  ['ps', 'u32'],
  ['pw', 'u32'],
  ['gh', 'u32'],
  ['gw', 'u32'],
  ['off', 'u32'],
];

// Both kernels address along x in units of `width` floats (w = W/width, pw = P/width): vec4 when
// P, W and the offset are multiples of 4, so that one invocation moves 4 pixels of a patch row.

/** One invocation per patch unit: out[b, py·gw + px, (c·P + ky)·P + kx] = img[b, c, py·P + ky, px·P + kx]. */
function im2colSpec(width: 1 | 4): KernelSpec {
  const t = floatType(width);
  return {
    name: 'im2col',
    variant: t,
    storage: [
      { name: 'Img', access: 'read', type: `array<${t}>` },
      { name: 'Out', access: 'read_write', type: `array<${t}>` },
    ],
    params: PARAMS,
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  let per_channel = p.ps * p.pw;
  let cols = p.c * per_channel;
  let col = i % cols;
  let bn = i / cols;
  let n = bn % (p.gh * p.gw);
  let b = bn / (p.gh * p.gw);
  let ch = col / per_channel;
  let y = (n / p.gw) * p.ps + (col % per_channel) / p.pw;
  let x = (n % p.gw) * p.pw + col % p.pw;
  Out[i] = Img[p.off + ((b * p.c + ch) * p.h + y) * p.w + x];
}`,
  };
}

/** One invocation per image unit: the inverse permutation of im2col, 0 outside the patch grid. */
function col2imSpec(width: 1 | 4): KernelSpec {
  const t = floatType(width);
  return {
    name: 'col2im',
    variant: t,
    storage: [
      { name: 'Cols', access: 'read', type: `array<${t}>` },
      { name: 'Out', access: 'read_write', type: `array<${t}>` },
    ],
    params: PARAMS,
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  let x = i % p.w;
  let y = (i / p.w) % p.h;
  let ch = (i / (p.w * p.h)) % p.c;
  let b = i / (p.w * p.h * p.c);
  let py = y / p.ps;
  let px = x / p.pw;
  if (py >= p.gh || px >= p.gw) { Out[i] = ${t}(0.0); return; }
  let row = b * p.gh * p.gw + py * p.gw + px;
  let col = (ch * p.ps + y % p.ps) * p.pw + x % p.pw;
  Out[i] = Cols[p.off + row * p.c * p.ps * p.pw + col];
}`,
  };
}

export interface PatchGrid {
  b: number;
  c: number;
  h: number;
  w: number;
  /** Patches along the height and the width. */
  gh: number;
  gw: number;
}

/** The patch grid of images (B, C, H, W) cut into P×P patches; errors name the op and the shapes. */
export function patchGrid(op: string, shape: readonly number[], patch: number): PatchGrid {
  if (shape.length !== 4 || !Number.isInteger(patch) || patch < 1 || shape[2]! < patch || shape[3]! < patch) {
    throw new Error(`${op}: expected images (B, C, H, W) with H, W ≥ patch, got ${shapeStr(shape)} with patch ${patch}`);
  }
  const [b, c, h, w] = shape as [number, number, number, number];
  return { b, c, h, w, gh: Math.floor(h / patch), gw: Math.floor(w / patch) };
}

/** Patches (B, gh·gw, C·P·P) of images (B, C, H, W), each row in (c, ky, kx) order. */
export function launchIm2col(images: Tensor, patch: number): Tensor {
  if (images.dtype !== 'f32') throw new Error(`im2col: expected f32 images, got ${images.dtype}${shapeStr(images.shape)}`);
  const g = patchGrid('im2col', images.shape, patch);
  const out = empty(images.device, [g.b, g.gh * g.gw, g.c * patch * patch], 'f32', 'im2col');
  if (out.size === 0) return out;
  const src = images.isContiguous() ? images : launchCopy(images);
  const u = vec4Width(patch, g.w, src.offset);
  const values = [out.size / u, g.c, g.h, g.w / u, patch, patch / u, g.gh, g.gw, src.offset / u];
  images.device.dispatch(im2colSpec(u), [src.buffer, out.buffer], values, grid1d(out.size / u, WG));
  if (src !== images) src.dispose();
  return out;
}

/** The gradient of im2col: patches (B, gh·gw, C·P·P) back into images of `imageShape` (B, C, H, W). */
export function launchCol2im(cols: Tensor, imageShape: readonly number[], patch: number): Tensor {
  const g = patchGrid('col2im', imageShape, patch);
  const want = [g.b, g.gh * g.gw, g.c * patch * patch];
  if (cols.dtype !== 'f32' || cols.rank !== 3 || cols.shape.some((d, i) => d !== want[i])) {
    throw new Error(`col2im: expected f32 patches ${shapeStr(want)} for images ${shapeStr(imageShape)} with patch ${patch}, got ${cols.dtype}${shapeStr(cols.shape)}`);
  }
  const out = empty(cols.device, imageShape, 'f32', 'col2im');
  if (out.size === 0) return out;
  const src = cols.isContiguous() ? cols : launchCopy(cols);
  const u = vec4Width(patch, g.w, src.offset);
  const values = [out.size / u, g.c, g.h, g.w / u, patch, patch / u, g.gh, g.gw, src.offset / u];
  cols.device.dispatch(col2imSpec(u), [src.buffer, out.buffer], values, grid1d(out.size / u, WG));
  if (src !== cols) src.dispose();
  return out;
}
