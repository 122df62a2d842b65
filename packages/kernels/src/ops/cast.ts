// Conversions between f32 and f16 storage (devices with 'shader-f16'): half-precision weights and
// activations halve memory and bandwidth; arithmetic that needs range stays in f32.
import { type KernelSpec, LINEAR_INDEX, grid1d } from '../kernel.js';
import { type DType, type Tensor, empty, shapeStr } from '../tensor.js';
import { launchCopy } from './elementwise.js';

const WG = 256;

function castSpec(from: 'f32' | 'f16', to: 'f32' | 'f16'): KernelSpec {
  return {
    name: 'cast',
    variant: `${from}->${to}`,
    enable: ['f16'],
    storage: [
      { name: 'X', access: 'read', type: `array<${from}>` },
      { name: 'Out', access: 'read_write', type: `array<${to}>` },
    ],
    params: [
      ['n', 'u32'],
      ['off', 'u32'],
    ],
    workgroupSize: [WG],
    code: `
@compute @workgroup_size(WG_X)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${LINEAR_INDEX};
  if (i >= p.n) { return; }
  Out[i] = ${to}(X[p.off + i]);
}`,
  };
}

/** A contiguous copy of `x` in `dtype` (f32 <-> f16). f16 values round to nearest even; overflow gives ±inf. */
export function launchCast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return launchCopy(x);
  if (!((x.dtype === 'f32' && dtype === 'f16') || (x.dtype === 'f16' && dtype === 'f32'))) {
    throw new Error(`cast: ${x.dtype} -> ${dtype} is not supported (f32 <-> f16 only) for ${shapeStr(x.shape)}`);
  }
  if (!x.device.has('shader-f16')) throw new Error(`cast: the adapter '${x.device.info.name}' lacks 'shader-f16'`);
  if (!x.isContiguous()) {
    if (x.dtype === 'f16') throw new Error(`cast: f16 input ${shapeStr(x.shape)} must be contiguous`);
    const c = launchCopy(x);
    const out = launchCast(c, dtype);
    c.dispose();
    return out;
  }
  const out = empty(x.device, x.shape, dtype, 'cast');
  if (out.size > 0) x.device.dispatch(castSpec(x.dtype as 'f32' | 'f16', dtype as 'f32' | 'f16'), [x.buffer, out.buffer], [out.size, x.offset], grid1d(out.size, WG));
  return out;
}
