// The three fused kernels of MP-FGVC next to the unfused compositions of the engine's own kernels,
// forward + backward through the tape, with the pool's high-water mark above what was in use
// before each measurement:
// - attention at ViT-B/16@448 per image (12 heads, N = 785, d = 64; one image, not a batch of
//   16: the unfused backward alone takes seconds per image on a software adapter) vs
//   matmul(q, kᵀ) → softmax → matmul(·, v); and CLIP's causal text attention at CUB's C = 200
//   prompts (fused only); and the attention kernel families side by side at the demo's and
//   ViT-Ti/16@224's shapes (which one runs by default is noted);
// - SsVP selection (B = 16, N = 784, K = 12, D = 768) vs topk ids + gatherRows + concat with CLS;
// - VLFM at D = 512, B = 16, C = 200 and 555 vs matmul / softmax / matmul with the image's own key.
import {
  ATTENTION_KERNELS,
  type AttentionOptions,
  type Device,
  type Tensor,
  add,
  attention,
  attentionKernel,
  backward,
  concat,
  fixedSubgroupSize,
  matmul,
  mul,
  scale,
  scope,
  slice,
  softmax,
  sum,
  tensor,
  vlfmAttention,
} from '@mpfgvc/kernels';
import { launchGatherRows, launchTopK, launchTopKGather } from '@mpfgvc/kernels/raw';
import { Rng } from '@mpfgvc/kernels/testing';
import { timeGpu } from '../measure.js';
import type { Row } from '../report.js';
import type { SuiteOptions } from './options.js';

const MB = 1024 * 1024;

interface Measured {
  sec: number;
  peakMB: number;
}

/** Median time of `fn` (run in a scope) and the pool's peak above the bytes in use before it. */
async function measure(dev: Device, fn: () => void, repeats: number): Promise<Measured> {
  const sec = await timeGpu(dev, () => scope(fn), { repeats, warmup: 1 });
  await dev.sync();
  const base = dev.pool.stats().inUse;
  dev.pool.resetPeak();
  scope(fn);
  await dev.sync();
  return { sec, peakMB: (dev.pool.stats().peakInUse - base) / MB };
}

function clearGrads(ts: Tensor[]): void {
  for (const t of ts) {
    t.grad?.dispose();
    t.grad = null;
  }
}

/** VLFM from the engine's differentiable ops: the image's own score, the text scores, softmax, values. */
function vlfmUnfused(q0: Tensor, k0: Tensor, v0: Tensor, kt: Tensor, vt: Tensor, s: number, C: number): Tensor {
  const own = scale(sum(mul(q0, k0), 1, true), s); // (B, 1)
  const p = softmax(concat([own, matmul(q0, kt, { transB: true, alpha: s })], 1)); // (B, C+1)
  return add(matmul(slice(p, 1, 1, C + 1), vt), mul(slice(p, 1, 0, 1), v0)); // (B, D)
}

export async function attentionRows(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rng = new Rng(2);
  const repeats = opts.quick ? 1 : 3;
  const rows: Row[] = [];
  const owned: Tensor[] = [];
  const make = (shape: number[], requiresGrad = false) => {
    const t = tensor(dev, rng.normal(shape.reduce((a, b) => a * b, 1)), shape, { requiresGrad });
    owned.push(t);
    return t;
  };
  const pair = (name: string, shape: string, fused: Measured, unfused: Measured, flops: number, note: string) => {
    rows.push(
      {
        suite: 'kernels',
        name: `${name} fused`,
        shape,
        metric: 'time',
        value: fused.sec * 1e3,
        unit: 'ms',
        note: `${flops ? `${(flops / fused.sec / 1e9).toFixed(1)} GFLOP/s; ` : ''}peak ${fused.peakMB.toFixed(1)} MB`,
      },
      { suite: 'kernels', name: `${name} unfused`, shape, metric: 'time', value: unfused.sec * 1e3, unit: 'ms', note: `${note}; peak ${unfused.peakMB.toFixed(1)} MB` },
      { suite: 'kernels', name: `${name} fused speedup`, shape, metric: 'ratio', value: unfused.sec / fused.sec, unit: 'x', note: `peak memory ${(unfused.peakMB / Math.max(fused.peakMB, 1e-9)).toFixed(1)}x lower fused` },
    );
  };

  // ---- multi-head attention, ViT-B/16@448 per image ----
  {
    const [B, H, N, d] = opts.quick ? [1, 2, 37, 16] : [1, 12, 785, 64];
    const shape = `B${B} H${H} N${N} d${d}${opts.quick ? '' : ' (one image of a ViT-B/16@448 batch)'}`;
    const q = make([B, H, N, d], true);
    const k = make([B, H, N, d], true);
    const v = make([B, H, N, d], true);
    const g = make([B, H, N, d]);
    const s = 1 / Math.sqrt(d);
    const unfusedOut = () => matmul(softmax(matmul(q, k, { transB: true, alpha: s })), v);
    const leaves = [q, k, v];
    const fwd = 4 * B * H * N * N * d;
    const fusedFwd = await measure(dev, () => void attention(q, k, v), repeats);
    const unfusedFwd = await measure(dev, () => void unfusedOut(), repeats);
    pair('attention forward', shape, fusedFwd, unfusedFwd, fwd, 'matmul·softmax·matmul');
    const fusedStep = await measure(
      dev,
      () => {
        backward(attention(q, k, v), g);
        clearGrads(leaves);
      },
      repeats,
    );
    const unfusedStep = await measure(
      dev,
      () => {
        backward(unfusedOut(), g);
        clearGrads(leaves);
      },
      repeats,
    );
    // Flops of the fused kernels: the subgroup backward (8-lane subgroups, d a multiple of 4 up
    // to 64) recomputes Q·Kᵀ and dO·Vᵀ once, 10·N²·d in all; the portable one in both passes, 14.
    const bwd = (fixedSubgroupSize(dev) === 8 && d % 4 === 0 && d <= 64 ? 10 : 14) * B * H * N * N * d;
    pair('attention forward+backward', shape, fusedStep, unfusedStep, fwd + bwd, 'matmul·softmax·matmul and their backwards');
  }

  // ---- the kernel families side by side: forward + backward at a training step's shapes ----
  const familyShapes = opts.quick
    ? [['quick', 2, 2, 17, 16] as const]
    : [['demo', 32, 4, 65, 16] as const, ['ViT-Ti/16@224', 8, 3, 197, 64] as const];
  for (const [what, B, H, N, d] of familyShapes) {
    const [q, k, v] = [0, 1, 2].map(() => make([B, H, N, d], true)) as [Tensor, Tensor, Tensor];
    const g = make([B, H, N, d]);
    const shape = `B${B} H${H} N${N} d${d} (${what})`;
    const chosen = attentionKernel(q, k);
    const forms: [string, AttentionOptions][] = [
      ...ATTENTION_KERNELS.map((kernel): [string, AttentionOptions] => [`${kernel} kernels`, { kernel }]),
      ['lanes kernels without subgroups', { kernel: 'lanes', subgroups: false }],
    ];
    for (const [name, o] of forms) {
      try {
        attentionKernel(q, k, o);
      } catch {
        continue; // not on this adapter (subgroups) or not at this length and head dim
      }
      const step = () => {
        backward(attention(q, k, v, o), g);
        clearGrads([q, k, v]);
      };
      const m = await measure(dev, step, repeats);
      const isDefault = o.kernel === chosen && o.subgroups === undefined;
      rows.push({ suite: 'kernels', name: `attention forward+backward, ${name}`, shape, metric: 'time', value: m.sec * 1e3, unit: 'ms', note: `${isDefault ? 'the default here; ' : ''}peak ${m.peakMB.toFixed(1)} MB` });
    }
  }

  // ---- CLIP text attention: causal, run up to EOT ----
  {
    const [P, H, N, d] = opts.quick ? [5, 2, 20, 16] : [200, 8, 20, 64];
    const q = make([P, H, N, d], true);
    const k = make([P, H, N, d], true);
    const v = make([P, H, N, d], true);
    const g = make([P, H, N, d]);
    const step = await measure(
      dev,
      () => {
        backward(attention(q, k, v, { causal: true }), g);
        clearGrads([q, k, v]);
      },
      repeats,
    );
    rows.push({
      suite: 'kernels',
      name: 'attention forward+backward, causal (CLIP text)',
      shape: `prompts${P} H${H} N${N} d${d}`,
      metric: 'time',
      value: step.sec * 1e3,
      unit: 'ms',
      note: `peak ${step.peakMB.toFixed(1)} MB`,
    });
  }

  // ---- SsVP: TopK + [CLS; tokens] gather ----
  {
    const [B, N, K, D] = opts.quick ? [2, 49, 4, 32] : [16, 784, 12, 768];
    const x = make([B, N + 1, D]);
    const scores = make([B, N]);
    const fused = await measure(dev, () => void launchTopKGather(x, scores, K), repeats);
    const unfused = await measure(
      dev,
      () => {
        const ids = launchTopK(scores, K);
        const patches = x.view([B, N, D], [x.strides[0]!, x.strides[1]!, 1], x.offset + D);
        const cls = slice(x, 1, 0, 1);
        concat([cls, launchGatherRows(patches, ids)], 1);
      },
      repeats,
    );
    pair('ssvp topk+gather', `B${B} N${N} K${K} D${D}`, fused, unfused, 0, 'topk ids + gatherRows (copies the strided patch view first) + concat');
  }

  // ---- VLFM cross-modal attention ----
  for (const C of opts.quick ? [3] : [10, 200, 555]) {
    const [B, D] = opts.quick ? [2, 8] : [16, 512];
    const q0 = make([B, D], true);
    const k0 = make([B, D], true);
    const v0 = make([B, D], true);
    const kt = make([C, D], true);
    const vt = make([C, D], true);
    const g = make([B, D]);
    const leaves = [q0, k0, v0, kt, vt];
    const s = 1 / Math.sqrt(D);
    const fused = await measure(
      dev,
      () => {
        backward(vlfmAttention(q0, k0, v0, kt, vt), g);
        clearGrads(leaves);
      },
      repeats,
    );
    const unfused = await measure(
      dev,
      () => {
        backward(vlfmUnfused(q0, k0, v0, kt, vt, s, C), g);
        clearGrads(leaves);
      },
      repeats,
    );
    pair('vlfm forward+backward', `B${B} C${C} D${D}`, fused, unfused, 8 * B * (C + 1) * D, 'matmul·concat·softmax·matmul and their backwards');
  }

  for (const t of owned) t.dispose();
  return rows;
}
