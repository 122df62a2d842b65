import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, type Tensor, backward, scope, tensor } from '../../index.js';
import { qkvAttention } from '../../nn/attention.js';
import { Rng, assertClose, attentionBackwardRef, attentionRef, clsAttentionScoresRef, dot, numericGrad, testDevice } from '../../testing/index.js';
import type { F64 } from '../../ref/array.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(23);

interface Case {
  B: number;
  T: number;
  D: number;
  heads: number;
  queries: number;
}

const label = (c: Case) => `B${c.B} T${c.T} D${c.D} heads${c.heads} queries${c.queries}`;

// ---- float64 reference: split qkv into heads, attend, merge the heads ----

/** Part `which` (0 q, 1 k, 2 v) of qkv (B, T, 3D) as (B, H, rows, d), rows 0..rows-1. */
function heads(qkv: Float64Array, c: Case, which: number, rows: number): F64 {
  const d = c.D / c.heads;
  const out = new Float64Array(c.B * c.heads * rows * d);
  for (let b = 0; b < c.B; b++)
    for (let h = 0; h < c.heads; h++)
      for (let t = 0; t < rows; t++)
        for (let e = 0; e < d; e++) out[((b * c.heads + h) * rows + t) * d + e] = qkv[(b * c.T + t) * 3 * c.D + which * c.D + h * d + e]!;
  return { data: out, shape: [c.B, c.heads, rows, d] };
}

/** (B, H, rows, d) as (B, rows, D). */
function merge(x: F64, c: Case): Float64Array {
  const [B, H, rows, d] = x.shape as [number, number, number, number];
  const out = new Float64Array(B * rows * H * d);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < rows; t++) for (let e = 0; e < d; e++) out[(b * rows + t) * c.D + h * d + e] = x.data[((b * H + h) * rows + t) * d + e]!;
  return out;
}

/** (B, rows, D) as (B, H, rows, d). */
function split(x: Float64Array, c: Case, rows: number): F64 {
  const d = c.D / c.heads;
  const out = new Float64Array(x.length);
  for (let b = 0; b < c.B; b++)
    for (let h = 0; h < c.heads; h++)
      for (let t = 0; t < rows; t++) for (let e = 0; e < d; e++) out[((b * c.heads + h) * rows + t) * d + e] = x[(b * rows + t) * c.D + h * d + e]!;
  return { data: out, shape: [c.B, c.heads, rows, d] };
}

function qkvAttentionRef(qkv: Float64Array, c: Case): Float64Array {
  return merge(attentionRef(heads(qkv, c, 0, c.queries), heads(qkv, c, 1, c.T), heads(qkv, c, 2, c.T)).out, c);
}

/** d(Σ w ⊙ qkvAttention(qkv)) / d qkv, (B, T, 3D): the attention backward's dq, dk, dv put back where q, k, v were read. */
function qkvAttentionBackwardRef(qkv: Float64Array, w: Float64Array, c: Case): Float64Array {
  const g = attentionBackwardRef(heads(qkv, c, 0, c.queries), heads(qkv, c, 1, c.T), heads(qkv, c, 2, c.T), split(w, c, c.queries));
  const d = c.D / c.heads;
  const out = new Float64Array(qkv.length);
  for (const [which, x, rows] of [[0, g.dq, c.queries], [1, g.dk, c.T], [2, g.dv, c.T]] as const) {
    for (let b = 0; b < c.B; b++)
      for (let h = 0; h < c.heads; h++)
        for (let t = 0; t < rows; t++)
          for (let e = 0; e < d; e++) out[(b * c.T + t) * 3 * c.D + which * c.D + h * d + e] = x.data[((b * c.heads + h) * rows + t) * d + e]!;
  }
  return out;
}

function data(c: Case) {
  return { qkv: rng.normal(c.B * c.T * 3 * c.D), w: rng.normal(c.B * c.queries * c.D) };
}

describe('qkvAttention float64 reference backward', () => {
  const cases: Case[] = [
    { B: 2, T: 5, D: 8, heads: 2, queries: 5 },
    { B: 1, T: 4, D: 6, heads: 3, queries: 1 },
    { B: 1, T: 6, D: 4, heads: 1, queries: 3 },
  ];
  for (const c of cases) {
    it(`matches finite differences: ${label(c)}`, () => {
      const x = data(c);
      const qkv = Float64Array.from(x.qkv);
      const want = qkvAttentionBackwardRef(qkv, Float64Array.from(x.w), c);
      const fd = numericGrad((v) => dot(x.w, qkvAttentionRef(v, c)), qkv);
      assertClose(want, fd, { atol: 1e-7, rtol: 1e-6 }, 'dqkv');
    });
  }
});

describe('qkvAttention (GPU vs float64 reference)', () => {
  // CPU adapters run the lane kernels up to 32 keys and the subgroup kernels beyond (head dim a
  // multiple of 4); a head dim of 6 takes the portable kernels everywhere. queries < T is the
  // ViT's last block (the CLS row alone): dq of the other rows must come back zero.
  const cases: Case[] = [
    { B: 2, T: 9, D: 16, heads: 2, queries: 9 },
    { B: 2, T: 9, D: 16, heads: 2, queries: 1 },
    { B: 1, T: 40, D: 32, heads: 2, queries: 40 },
    { B: 2, T: 7, D: 12, heads: 2, queries: 3 },
  ];
  for (const c of cases) {
    it(label(c), async () => {
      const x = data(c);
      const qkv = tensor(dev, x.qkv, [c.B, c.T, 3 * c.D], { requiresGrad: true });
      const { out, scores } = scope(() => {
        const r = qkvAttention(qkv, c.heads, { queries: c.queries, scores: true });
        backward(r.out, tensor(dev, x.w, [c.B, c.queries, c.D]));
        return r;
      });
      expect(out.shape).toEqual([c.B, c.queries, c.D]);
      const qkv64 = Float64Array.from(x.qkv);
      // Tolerances as for attention itself: f32 sums over T keys of unit-normal data.
      assertClose(await out.read(), qkvAttentionRef(qkv64, c), { atol: 2e-5, rtol: 1e-4 }, 'out');
      assertClose(await (scores as Tensor).read(), clsAttentionScoresRef(heads(qkv64, c, 0, c.T), heads(qkv64, c, 1, c.T)).data, { atol: 1e-6, rtol: 1e-4 }, 'scores');
      assertClose(await (qkv.grad as Tensor).read(), qkvAttentionBackwardRef(qkv64, Float64Array.from(x.w), c), { atol: 1e-4, rtol: 1e-3 }, 'dqkv');
      for (const t of [out, scores as Tensor, qkv]) t.dispose();
    });
  }

  it('names the op and the shape on a bad qkv or query count', () => {
    scope(() => {
      const qkv = tensor(dev, rng.normal(2 * 4 * 24), [2, 4, 24]);
      expect(() => qkvAttention(qkv, 3)).toThrow(/qkvAttention: qkv must be a contiguous \(B, T, 3D\) with D divisible by 3 heads, got \[2, 4, 24\]/);
      expect(() => qkvAttention(qkv, 2, { queries: 5 })).toThrow(/qkvAttention: queries 5 outside \[1, 4\]/);
    });
  });
});
