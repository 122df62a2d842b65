// End-to-end checks of the engine: small models train through the tape, their gradients equal
// finite differences of the same computation written independently in float64, and GPU memory
// stays flat across training steps.
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  type Device,
  type Tensor,
  add,
  attention,
  backward,
  crossEntropy,
  gelu,
  layerNorm,
  linear,
  permute,
  reshape,
  scope,
  slice,
  tensor,
} from './index.js';
import { Rng, assertClose, numericGrad, testDevice } from './testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

// ---- float64 building blocks, written from the math ----

type Params = Record<string, { data: Float64Array; shape: number[] }>;

/** y (rows, out) = x (rows, in) · Wᵀ + b */
function linear64(x: Float64Array, rows: number, w: Float64Array, b: Float64Array, nin: number, nout: number): Float64Array {
  const y = new Float64Array(rows * nout);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < nout; o++) {
      let s = b[o]!;
      for (let i = 0; i < nin; i++) s += x[r * nin + i]! * w[o * nin + i]!;
      y[r * nout + o] = s;
    }
  }
  return y;
}

function erf(x: number): number {
  // Series (exact enough in float64 for |x| < 6; larger inputs do not occur here).
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
    if (Math.abs(term) < 1e-18) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

const gelu64 = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));

function layerNorm64(x: Float64Array, rows: number, d: number, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = 0; i < d; i++) m += x[r * d + i]!;
    m /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - m) ** 2;
    v /= d;
    const rs = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - m) * rs * w[i]! + b[i]!;
  }
  return y;
}

function crossEntropy64(logits: Float64Array, rows: number, c: number, labels: Int32Array): number {
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let j = 0; j < c; j++) mx = Math.max(mx, logits[r * c + j]!);
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(logits[r * c + j]! - mx);
    loss += Math.log(s) + mx - logits[r * c + labels[r]!]!;
  }
  return loss / rows;
}

function initParams(rng: Rng, spec: Record<string, number[]>, std = 0.3): Params {
  const p: Params = {};
  for (const [name, shape] of Object.entries(spec)) {
    const n = shape.reduce((a, b) => a * b, 1);
    // LayerNorm gains start near 1, as in real models.
    const isGain = /^ln.\.w$/.test(name);
    const data = Float64Array.from(rng.normal(n, isGain ? 0.1 : std), (v) => (isGain ? 1 + v : v));
    p[name] = { data, shape };
  }
  return p;
}

function toGpu(p: Params): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(p)) out[k] = tensor(dev, Float32Array.from(v.data), v.shape, { requiresGrad: true, name: k });
  return out;
}

/** Every parameter's analytic gradient (GPU) against central differences of the float64 loss. */
async function checkGradients(params: Params, gpu: Record<string, Tensor>, loss64: (p: Params) => number, tol: { atol: number; rtol: number }) {
  for (const [name, v] of Object.entries(params)) {
    const fd = numericGrad(
      (x) => {
        const saved = params[name]!.data;
        params[name] = { data: x, shape: v.shape };
        const l = loss64(params);
        params[name] = { data: saved, shape: v.shape };
        return l;
      },
      Float64Array.from(v.data),
      1e-6,
    );
    assertClose(await gpu[name]!.grad!.read(), fd, tol, `grad ${name}`);
  }
}

// ---- a 2-layer MLP ----

const MLP = { B: 6, IN: 5, H: 7, C: 3 };

function mlp64(p: Params, x: Float64Array, labels: Int32Array): number {
  const { B, IN, H, C } = MLP;
  const h = linear64(x, B, p['fc1.w']!.data, p['fc1.b']!.data, IN, H).map(gelu64);
  return crossEntropy64(linear64(h, B, p['fc2.w']!.data, p['fc2.b']!.data, H, C), B, C, labels);
}

function mlpGpu(p: Record<string, Tensor>, x: Tensor, labels: Tensor): Tensor {
  return scope(() => crossEntropy(linear(gelu(linear(x, p['fc1.w']!, p['fc1.b']!)), p['fc2.w']!, p['fc2.b']!), labels));
}

// ---- a 1-block pre-norm transformer with a CLS head ----

const TF = { B: 2, N: 5, D: 8, HEADS: 2, C: 3 };

function block64(p: Params, x: Float64Array, labels: Int32Array): number {
  const { B, N, D, HEADS, C } = TF;
  const dh = D / HEADS;
  const rows = B * N;
  const a = layerNorm64(x, rows, D, p['ln1.w']!.data, p['ln1.b']!.data, 1e-5);
  const qkv = linear64(a, rows, p['qkv.w']!.data, p['qkv.b']!.data, D, 3 * D);
  const att = new Float64Array(rows * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < HEADS; h++) {
      for (let i = 0; i < N; i++) {
        const s = new Float64Array(N);
        let mx = -Infinity;
        for (let j = 0; j < N; j++) {
          let dot = 0;
          for (let k = 0; k < dh; k++) dot += qkv[(b * N + i) * 3 * D + h * dh + k]! * qkv[(b * N + j) * 3 * D + D + h * dh + k]!;
          s[j] = dot / Math.sqrt(dh);
          mx = Math.max(mx, s[j]!);
        }
        let z = 0;
        for (let j = 0; j < N; j++) z += (s[j] = Math.exp(s[j]! - mx));
        for (let k = 0; k < dh; k++) {
          let o = 0;
          for (let j = 0; j < N; j++) o += (s[j]! / z) * qkv[(b * N + j) * 3 * D + 2 * D + h * dh + k]!;
          att[(b * N + i) * D + h * dh + k] = o;
        }
      }
    }
  }
  const h1 = linear64(att, rows, p['proj.w']!.data, p['proj.b']!.data, D, D).map((v, i) => v + x[i]!);
  const m = layerNorm64(h1, rows, D, p['ln2.w']!.data, p['ln2.b']!.data, 1e-5);
  const f = linear64(linear64(m, rows, p['fc1.w']!.data, p['fc1.b']!.data, D, 4 * D).map(gelu64), rows, p['fc2.w']!.data, p['fc2.b']!.data, 4 * D, D);
  const out = h1.map((v, i) => v + f[i]!);
  const cls = new Float64Array(B * D);
  for (let b = 0; b < B; b++) for (let k = 0; k < D; k++) cls[b * D + k] = out[b * N * D + k]!;
  const n = layerNorm64(cls, B, D, p['lnf.w']!.data, p['lnf.b']!.data, 1e-5);
  return crossEntropy64(linear64(n, B, p['head.w']!.data, p['head.b']!.data, D, C), B, C, labels);
}

function blockGpu(p: Record<string, Tensor>, x: Tensor, labels: Tensor): Tensor {
  const { B, N, D, HEADS } = TF;
  const dh = D / HEADS;
  return scope(() => {
    const a = layerNorm(x, p['ln1.w']!, p['ln1.b']!, 1e-5);
    const qkv = permute(reshape(linear(a, p['qkv.w']!, p['qkv.b']!), [B, N, 3, HEADS, dh]), [2, 0, 3, 1, 4]); // (3, B, H, N, dh)
    const pick = (i: number) => reshape(slice(qkv, 0, i, i + 1), [B, HEADS, N, dh]);
    const o = attention(pick(0), pick(1), pick(2)); // (B, H, N, dh)
    const merged = reshape(permute(o, [0, 2, 1, 3]), [B, N, D]);
    const h1 = add(x, linear(merged, p['proj.w']!, p['proj.b']!));
    const m = layerNorm(h1, p['ln2.w']!, p['ln2.b']!, 1e-5);
    const out = add(h1, linear(gelu(linear(m, p['fc1.w']!, p['fc1.b']!)), p['fc2.w']!, p['fc2.b']!));
    const cls = reshape(slice(out, 1, 0, 1), [B, D]);
    return crossEntropy(linear(layerNorm(cls, p['lnf.w']!, p['lnf.b']!, 1e-5), p['head.w']!, p['head.b']!), labels);
  });
}

function blockParams(rng: Rng): Params {
  const { D, C } = TF;
  return initParams(rng, {
    'ln1.w': [D],
    'ln1.b': [D],
    'qkv.w': [3 * D, D],
    'qkv.b': [3 * D],
    'proj.w': [D, D],
    'proj.b': [D],
    'ln2.w': [D],
    'ln2.b': [D],
    'fc1.w': [4 * D, D],
    'fc1.b': [4 * D],
    'fc2.w': [D, 4 * D],
    'fc2.b': [D],
    'lnf.w': [D],
    'lnf.b': [D],
    'head.w': [C, D],
    'head.b': [C],
  });
}

describe('2-layer MLP', () => {
  const rng = new Rng(11);
  const { B, IN, H, C } = MLP;
  const params = initParams(rng, { 'fc1.w': [H, IN], 'fc1.b': [H], 'fc2.w': [C, H], 'fc2.b': [C] }, 0.5);
  const x = rng.normal(B * IN);
  const labels = rng.ints(B, C);

  it('gradients match finite differences of the float64 computation', async () => {
    const gpu = toGpu(params);
    const loss = mlpGpu(gpu, tensor(dev, x, [B, IN]), tensor(dev, labels, [B]));
    const l = await loss.item();
    expect(l).toBeCloseTo(mlp64(params, Float64Array.from(x), labels), 4);
    backward(loss);
    await checkGradients(params, gpu, (p) => mlp64(p, Float64Array.from(x), labels), { atol: 2e-5, rtol: 2e-3 });
  });

  it('trains: the loss falls', async () => {
    const gpu = toGpu(params);
    const opt = new AdamW(Object.values(gpu), { lr: 0.05, weightDecay: 0 });
    const xs = tensor(dev, x, [B, IN]);
    const ys = tensor(dev, labels, [B]);
    const losses: number[] = [];
    for (let step = 0; step < 60; step++) {
      const loss = mlpGpu(gpu, xs, ys);
      backward(loss);
      opt.step();
      opt.zeroGrad();
      if (step % 20 === 0 || step === 59) losses.push(await loss.item());
      loss.dispose();
    }
    expect(losses.at(-1)!).toBeLessThan(0.3 * losses[0]!);
  });
});

describe('1-block transformer', () => {
  const rng = new Rng(12);
  const { B, N, D } = TF;
  const params = blockParams(rng);
  const x = rng.normal(B * N * D);
  const labels = Int32Array.from([0, 2]);

  it('gradients match finite differences of the float64 computation', async () => {
    const gpu = toGpu(params);
    const loss = blockGpu(gpu, tensor(dev, x, [B, N, D]), tensor(dev, labels, [B]));
    expect(await loss.item()).toBeCloseTo(block64(params, Float64Array.from(x), labels), 4);
    backward(loss);
    await checkGradients(params, gpu, (p) => block64(p, Float64Array.from(x), labels), { atol: 5e-5, rtol: 5e-3 });
  });

  it('trains, and GPU memory is flat across steps', async () => {
    const gpu = toGpu(params);
    const opt = new AdamW(Object.values(gpu), { lr: 0.02, weightDecay: 0.01 });
    const xs = tensor(dev, x, [B, N, D]);
    const ys = tensor(dev, labels, [B]);
    const losses: number[] = [];
    let atStep2 = dev.pool.stats();
    for (let step = 1; step <= 50; step++) {
      const loss = blockGpu(gpu, xs, ys);
      backward(loss);
      opt.step();
      opt.zeroGrad();
      if (step === 1 || step === 50) losses.push(await loss.item());
      loss.dispose();
      if (step === 2) {
        await dev.sync();
        atStep2 = dev.pool.stats();
      }
    }
    await dev.sync();
    const atStep50 = dev.pool.stats();
    expect(atStep50.allocated).toBe(atStep2.allocated);
    expect(atStep50.inUse).toBe(atStep2.inUse);
    expect(atStep50.buffers).toBe(atStep2.buffers);
    expect(losses[1]!).toBeLessThan(0.5 * losses[0]!);
  });
});
