import { beforeAll, describe, expect, it } from 'vitest';
import { type Device, MATMUL_KERNELS, type MatmulKernel, type Tensor, backward, defaultKernel, f32ToF16, linear, matmul, scope, tensor, transpose } from '../../index.js';
import { launchMatmul, launchMatmulWithRowSum, launchSum } from '../../raw.js';
import { fitColumns } from './kernels.js';
import { type ActivationRef, type F64, Rng, assertClose, dot, f64, matmulBackwardRef, matmulRef, numericGrad, testDevice } from '../../testing/index.js';

let dev: Device;
beforeAll(async () => {
  dev = await testDevice();
});

const rng = new Rng(11);
const KERNELS = MATMUL_KERNELS;
const TOL = { atol: 1e-5, rtol: 1e-4 };

const numelOf = (s: number[]) => s.reduce((x, y) => x * y, 1);

interface Case {
  a: number[];
  b: number[];
  transA?: boolean;
  transB?: boolean;
}

/** Shapes of A and B (as stored) for op(A) = (M, K), op(B) = (K, N). */
function shapes(M: number, K: number, N: number, transA = false, transB = false): Case {
  return { a: transA ? [K, M] : [M, K], b: transB ? [N, K] : [K, N], transA, transB };
}

async function check(c: Case, kernel: MatmulKernel, opts: { bias?: boolean; activation?: ActivationRef; alpha?: number } = {}) {
  const av = rng.uniform(numelOf(c.a));
  const bv = rng.uniform(numelOf(c.b));
  const N = c.transB ? c.b[c.b.length - 2]! : c.b[c.b.length - 1]!;
  const biasv = opts.bias ? rng.uniform(N) : null;
  const out = launchMatmul(tensor(dev, av, c.a), tensor(dev, bv, c.b), {
    transA: c.transA,
    transB: c.transB,
    bias: biasv ? tensor(dev, biasv) : undefined,
    activation: opts.activation,
    alpha: opts.alpha,
    kernel,
  });
  const want = matmulRef(f64(av, c.a), f64(bv, c.b), { ...c, bias: biasv ? f64(biasv, [N]) : undefined, activation: opts.activation, alpha: opts.alpha });
  expect(out.shape).toEqual(want.shape);
  const K = c.transA ? c.a[c.a.length - 2]! : c.a[c.a.length - 1]!;
  assertClose(await out.read(), want.data, { atol: 1e-6 * K, rtol: 1e-4 }, `${kernel} ${JSON.stringify(c)} ${JSON.stringify(opts)}`);
}

describe('matmul forward against the float64 reference', () => {
  const sizes: [number, number, number][] = [
    [1, 1, 1],
    [7, 13, 5],
    [33, 65, 17],
    // vec4-aligned leading dims (the fast paths) with edges in every dim; K = 38 leaves a K tail.
    [68, 36, 52],
    [20, 38, 12],
  ];
  for (const kernel of KERNELS) {
    for (const [M, K, N] of sizes) {
      for (const [ta, tb] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as const) {
        it(`${kernel} ${M}×${K}×${N}${ta ? ' Aᵀ' : ''}${tb ? ' Bᵀ' : ''}`, () => check(shapes(M, K, N, ta, tb), kernel));
      }
    }
    it(`${kernel} batched with a broadcast 2-D operand on either side`, async () => {
      await check({ a: [2, 3, 9, 12], b: [12, 10] }, kernel);
      await check({ a: [9, 12], b: [4, 12, 10] }, kernel);
      await check({ a: [3, 12, 9], b: [10, 12], transA: true, transB: true }, kernel);
    });
    it(`${kernel} batch dims broadcast against each other (two levels, and more through a copy)`, async () => {
      await check({ a: [2, 1, 5, 8], b: [1, 3, 8, 6] }, kernel);
      await check({ a: [2, 1, 2, 5, 8], b: [3, 1, 8, 6] }, kernel);
    });
    it(`${kernel} bias, alpha and each activation, in the scalar and the vec4 epilogue (N a multiple of 4)`, async () => {
      for (const N of [23, 24]) {
        for (const activation of [undefined, 'gelu', 'quick_gelu', 'relu'] as const) {
          await check(shapes(19, 20, N, false, true), kernel, { bias: true, activation, alpha: 0.75 });
        }
      }
    });
  }

  for (const kernel of KERNELS) {
    it(`${kernel} row sums of op(A) from the product's kernel: against float64 and against the unfused column sum`, async () => {
      // Edges in M and N, a K tail, both layouts of A, a batch, and alpha (which the sums ignore).
      const cases: (Case & { alpha?: number })[] = [
        { ...shapes(68, 36, 52, true, false), alpha: 0.5 },
        shapes(33, 65, 17, true, true),
        shapes(20, 38, 12, false, true),
        shapes(7, 13, 5),
        { a: [3, 9, 12], b: [12, 10] },
        { a: [2, 12, 8], b: [2, 12, 16], transA: true },
      ];
      for (const c of cases) {
        const av = rng.uniform(numelOf(c.a));
        const bv = rng.uniform(numelOf(c.b));
        const at = tensor(dev, av, c.a);
        const before = dev.counts.dispatches;
        const { out, rowSum } = launchMatmulWithRowSum(at, tensor(dev, bv, c.b), { transA: c.transA, transB: c.transB, alpha: c.alpha, kernel });
        expect(dev.counts.dispatches - before).toBe(1);
        const what = `${kernel} ${JSON.stringify(c)}`;
        const want = matmulRef(f64(av, c.a), f64(bv, c.b), c);
        const K = c.transA ? c.a[c.a.length - 2]! : c.a[c.a.length - 1]!;
        assertClose(await out.read(), want.data, { atol: 1e-6 * K, rtol: 1e-4 }, `${what} product`);
        // Σ_k op(A)[m][k] in float64, per batch entry and row.
        const M = c.transA ? c.a[c.a.length - 1]! : c.a[c.a.length - 2]!;
        const batch = want.shape.slice(0, -2);
        const nb = numelOf(batch);
        const perA = M * K;
        const sums = new Float64Array(nb * M);
        for (let z = 0; z < nb; z++) {
          const base = c.a.length > 2 ? (z % numelOf(c.a.slice(0, -2))) * perA : 0;
          for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) sums[z * M + m]! += av[base + (c.transA ? k * M + m : m * K + k)]!;
        }
        expect(rowSum.shape).toEqual([...batch, M]);
        const got = await rowSum.read();
        assertClose(got, sums, { atol: 1e-6 * K, rtol: 1e-5 }, `${what} row sums`);
        // The unfused form: the same sums by the column-sum kernel over op(A)ᵀ.
        const unfused = launchSum(c.transA ? at : transpose(at, -2, -1), [at.rank - 2], false);
        if (nb === numelOf(c.a.slice(0, -2))) assertClose(got, await unfused.read(), { atol: 1e-6 * K, rtol: 1e-5 }, `${what} against launchSum`);
      }
      // No output columns: no workgroup to sum in, said plainly; with K = 0 too the sums are 0.
      expect(() => launchMatmulWithRowSum(tensor(dev, rng.uniform(12), [3, 4]), tensor(dev, new Float32Array(0), [4, 0]), { kernel })).toThrow(
        /row sums of op\(A\).*N = 0.*A \[3, 4\], K = 4/,
      );
      const empty = launchMatmulWithRowSum(tensor(dev, new Float32Array(0), [3, 0]), tensor(dev, new Float32Array(0), [0, 0]), { kernel });
      expect(Array.from(await empty.rowSum.read())).toEqual([0, 0, 0]);
    });
  }

  it('reads transposed and sliced views in place (one dispatch, no copy)', async () => {
    const av = rng.uniform(12 * 20);
    const bv = rng.uniform(16 * 12);
    for (const kernel of KERNELS) {
      const at = transpose(tensor(dev, av, [12, 20])); // (20, 12) column-major
      const bt = transpose(tensor(dev, bv, [16, 12])); // (12, 16) column-major
      await dev.sync();
      const before = dev.counts.dispatches;
      const out = launchMatmul(at, bt, { kernel });
      expect(dev.counts.dispatches - before).toBe(1);
      const want = matmulRef(f64(av, [12, 20]), f64(bv, [16, 12]), { transA: true, transB: true });
      assertClose(await out.read(), want.data, TOL, `${kernel} transposed views`);
      // A row slice [2:9] of A (offset 2 rows) times a column slice of B keeps an odd offset.
      const a = tensor(dev, av, [12, 20]);
      const rowsOfA = a.view([7, 20], [20, 1], 2 * 20);
      const bv2 = rng.uniform(20 * 16);
      const b = tensor(dev, bv2, [20, 16]);
      const colsOfB = b.view([20, 5], [16, 1], 3);
      const out2 = launchMatmul(rowsOfA, colsOfB, { kernel });
      const want2 = matmulRef(f64(av.slice(40, 180), [7, 20]), sliceCols(bv2, 20, 16, 3, 8), {});
      assertClose(await out2.read(), want2.data, TOL, `${kernel} sliced views`);
    }
  });

  it('a large ViT shape (785×768 · 768×2304 + bias, GELU), checked on sampled outputs', async () => {
    const [M, K, N] = [785, 768, 2304];
    const xv = rng.uniform(M * K);
    const wv = rng.uniform(N * K, -0.05, 0.05);
    const bv = rng.uniform(N);
    const out = await linear(tensor(dev, xv, [M, K]), tensor(dev, wv, [N, K]), tensor(dev, bv), 'gelu').read();
    const got: number[] = [];
    const want: number[] = [];
    for (let s = 0; s < 3000; s++) {
      const m = s < 40 ? M - 1 - (s % 20) : Math.floor(rng.next() * M);
      const n = s < 40 ? N - 1 - Math.floor(s / 20) : Math.floor(rng.next() * N);
      let z = bv[n]!;
      for (let k = 0; k < K; k++) z += xv[m * K + k]! * wv[n * K + k]!;
      got.push(out[m * N + n]!);
      want.push(0.5 * z * (1 + erfApprox(z / Math.SQRT2)));
    }
    assertClose(got, want, { atol: 2e-5, rtol: 2e-4 }, 'ViT mlp fc1');
  });

  it('f16 operands (f32 accumulation) where the adapter has shader-f16', async () => {
    if (!dev.has('shader-f16')) return;
    for (const kernel of KERNELS) {
      for (const c of [shapes(33, 40, 20, false, true), shapes(7, 13, 5)]) {
        // Values exact in f16, so the reference sees what the kernel reads.
        const av = Float32Array.from(rng.uniform(numelOf(c.a)), (v) => Math.round(v * 64) / 64);
        const bv = Float32Array.from(rng.uniform(numelOf(c.b)), (v) => Math.round(v * 64) / 64);
        const a = tensor(dev, f32ToF16(av), c.a, { dtype: 'f16' });
        const b = tensor(dev, f32ToF16(bv), c.b, { dtype: 'f16' });
        const want = matmulRef(f64(av, c.a), f64(bv, c.b), c);
        assertClose(await launchMatmul(a, b, { ...c, kernel }).read(), want.data, TOL, `${kernel} f16 ${JSON.stringify(c)}`);
        // Mixed: an f32 gradient times an f16 weight, as in backward through a frozen f16 layer.
        const a32 = tensor(dev, av, c.a);
        assertClose(await launchMatmul(a32, b, { ...c, kernel }).read(), want.data, TOL, `${kernel} f32·f16 ${JSON.stringify(c)}`);
      }
    }
  });

  it('names the op and the shapes on mismatch', () => {
    expect(() => launchMatmul(tensor(dev, new Float32Array(6), [2, 3]), tensor(dev, new Float32Array(8), [4, 2]))).toThrow(/matmul: f32\[2, 3\] · f32\[4, 2\]: inner dims 3 and 4 differ/);
    expect(() => launchMatmul(tensor(dev, new Float32Array(6), [2, 3]), tensor(dev, new Float32Array(6), [3, 2]), { bias: tensor(dev, [1, 2, 3]) })).toThrow(/bias must be .* of 2 elements/);
  });
});

function sliceCols(data: Float32Array, rows: number, cols: number, c0: number, c1: number): F64 {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) for (let c = c0; c < c1; c++) out.push(data[r * cols + c]!);
  return f64(out, [rows, c1 - c0]);
}

/** The shader's erf (Abramowitz & Stegun 7.1.26) is within 1.5e-7 of the true one; use the true one here. */
function erfApprox(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  return s * (1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a));
}

describe('matmul backward', () => {
  const refCases: { c: Case; activation?: ActivationRef; bias: boolean }[] = [
    { c: { a: [2, 3, 4], b: [4, 5] }, activation: 'gelu', bias: true },
    { c: { a: [3, 2], b: [2, 4, 3], transA: true, transB: true }, activation: 'quick_gelu', bias: false },
    { c: { a: [2, 1, 3, 4], b: [1, 2, 4, 2] }, activation: undefined, bias: true },
  ];

  it('reference backward matches finite differences of the reference forward', () => {
    for (const { c, activation, bias } of refCases) {
      const a = f64(rng.uniform(numelOf(c.a)), c.a);
      const b = f64(rng.uniform(numelOf(c.b)), c.b);
      const N = c.transB ? c.b[c.b.length - 2]! : c.b[c.b.length - 1]!;
      const bi = bias ? f64(rng.uniform(N), [N]) : undefined;
      const opts = { ...c, bias: bi, activation, alpha: 1.3 };
      const y = matmulRef(a, b, opts);
      const w = rng.uniform(y.data.length);
      const grads = matmulBackwardRef(a, b, f64(w, y.shape), opts);
      const fa = (x: Float64Array) => dot(matmulRef({ data: x, shape: a.shape }, b, opts).data, w);
      const fb = (x: Float64Array) => dot(matmulRef(a, { data: x, shape: b.shape }, opts).data, w);
      assertClose(grads.da.data, numericGrad(fa, a.data), { atol: 1e-6, rtol: 1e-5 }, 'ref dA');
      assertClose(grads.db.data, numericGrad(fb, b.data), { atol: 1e-6, rtol: 1e-5 }, 'ref dB');
      if (bi) {
        const fbias = (x: Float64Array) => dot(matmulRef(a, b, { ...opts, bias: { data: x, shape: bi.shape } }).data, w);
        assertClose(grads.dbias!.data, numericGrad(fbias, bi.data), { atol: 1e-6, rtol: 1e-5 }, 'ref dBias');
      }
    }
  });

  const gpuCases: { c: Case; activation?: ActivationRef; bias: boolean; alpha?: number }[] = [
    { c: { a: [2, 5, 12], b: [12, 9] }, activation: 'gelu', bias: true },
    { c: { a: [2, 5, 12], b: [9, 12], transB: true }, activation: 'relu', bias: true },
    { c: { a: [12, 5], b: [3, 12, 7], transA: true }, activation: 'quick_gelu', bias: false, alpha: 0.5 },
    { c: { a: [2, 1, 7, 8], b: [1, 3, 6, 8], transB: true }, activation: undefined, bias: true },
    { c: { a: [3, 8, 7], b: [3, 9, 8], transA: true, transB: true }, activation: undefined, bias: false },
    { c: { a: [1, 1], b: [1, 1] }, activation: 'gelu', bias: true },
  ];
  for (const { c, activation, bias, alpha } of gpuCases) {
    it(`GPU gradients match the reference: ${JSON.stringify(c)} ${activation ?? ''}${bias ? ' +bias' : ''}`, async () => {
      const av = rng.uniform(numelOf(c.a));
      const bv = rng.uniform(numelOf(c.b));
      const N = c.transB ? c.b[c.b.length - 2]! : c.b[c.b.length - 1]!;
      const biasv = bias ? rng.uniform(N) : null;
      const a = tensor(dev, av, c.a, { requiresGrad: true });
      const b = tensor(dev, bv, c.b, { requiresGrad: true });
      const bi = biasv ? tensor(dev, biasv, [N], { requiresGrad: true }) : undefined;
      let w: Float32Array | null = null;
      let shape: number[] = [];
      scope(() => {
        const y = matmul(a, b, { transA: c.transA, transB: c.transB, bias: bi, activation, alpha });
        shape = [...y.shape];
        w = rng.uniform(y.size);
        backward(y, tensor(dev, w, y.shape));
      });
      const want = matmulBackwardRef(f64(av, c.a), f64(bv, c.b), f64(w!, shape), {
        ...c,
        bias: biasv ? f64(biasv, [N]) : undefined,
        activation,
        alpha,
      });
      const tol = { atol: 2e-5, rtol: 2e-4 };
      assertClose(await a.grad!.read(), want.da.data, tol, 'dA');
      assertClose(await b.grad!.read(), want.db.data, tol, 'dB');
      if (bi) assertClose(await bi.grad!.read(), want.dbias!.data, tol, 'dBias');
    });
  }

  it("a linear layer's bias gradient comes out of its weight gradient's kernel: no dispatch of its own", async () => {
    const [B, T, In, Out] = [2, 7, 12, 8];
    const xv = rng.uniform(B * T * In);
    const wv = rng.uniform(Out * In);
    const bv = rng.uniform(Out);
    const g = rng.uniform(B * T * Out);
    const backwardDispatches = async (withBias: boolean) => {
      const x = tensor(dev, xv, [B, T, In], { requiresGrad: true });
      const W = tensor(dev, wv, [Out, In], { requiresGrad: true });
      const bias = withBias ? tensor(dev, bv, [Out], { requiresGrad: true }) : undefined;
      let n = 0;
      scope(() => {
        const y = linear(x, W, bias);
        const gt = tensor(dev, g, [B, T, Out]);
        const before = dev.counts.dispatches;
        backward(y, gt);
        n = dev.counts.dispatches - before;
      });
      if (bias) {
        const want = matmulBackwardRef(f64(xv, [B, T, In]), f64(wv, [Out, In]), f64(g, [B, T, Out]), { transB: true, bias: f64(bv, [Out]) });
        assertClose(await bias.grad!.read(), want.dbias!.data, TOL, 'db');
        assertClose(await W.grad!.read(), want.db.data, TOL, 'dW');
      }
      return n;
    };
    expect(await backwardDispatches(true)).toBe(await backwardDispatches(false));
  });

  it('follows the requiresGrad flags of when it was recorded, not of when backward runs', async () => {
    const [M, K, N] = [3, 4, 5];
    const av = rng.uniform(M * K);
    const bv = rng.uniform(K * N);
    const g = rng.uniform(M * N);
    const want = matmulBackwardRef(f64(av, [M, K]), f64(bv, [K, N]), f64(g, [M, N]), {});
    const tol = { atol: 2e-5, rtol: 2e-4 };

    // B frozen after the forward: the tape still owes both gradients, each from the right operand.
    const a = tensor(dev, av, [M, K], { requiresGrad: true });
    const b = tensor(dev, bv, [K, N], { requiresGrad: true });
    scope(() => {
      const y = matmul(a, b);
      b.requiresGrad = false;
      backward(y, tensor(dev, g, [M, N]));
    });
    assertClose(await a.grad!.read(), want.da.data, tol, 'dA with B frozen after the forward');
    assertClose(await b.grad!.read(), want.db.data, tol, 'dB with B frozen after the forward');

    // A unfrozen after the forward: the tape kept only what dB needs and gives A nothing.
    const a2 = tensor(dev, av, [M, K]);
    const b2 = tensor(dev, bv, [K, N], { requiresGrad: true });
    scope(() => {
      const y = matmul(a2, b2);
      a2.requiresGrad = true;
      backward(y, tensor(dev, g, [M, N]));
    });
    expect(a2.grad).toBeNull();
    assertClose(await b2.grad!.read(), want.db.data, tol, 'dB with A unfrozen after the forward');
  });

  it('linear: y = x·Wᵀ + b on a batch of sequences, and on a vector', async () => {
    const [B, T, In, Out] = [2, 5, 6, 4];
    const xv = rng.uniform(B * T * In);
    const wv = rng.uniform(Out * In);
    const bv = rng.uniform(Out);
    const x = tensor(dev, xv, [B, T, In], { requiresGrad: true });
    const W = tensor(dev, wv, [Out, In], { requiresGrad: true });
    const bias = tensor(dev, bv, [Out], { requiresGrad: true });
    const g = rng.uniform(B * T * Out);
    let y: Tensor | null = null;
    scope(() => {
      y = linear(x, W, bias, 'quick_gelu');
      backward(y, tensor(dev, g, [B, T, Out]));
      return y;
    });
    const opts = { transB: true, bias: f64(bv, [Out]), activation: 'quick_gelu' as const };
    assertClose(await y!.read(), matmulRef(f64(xv, [B, T, In]), f64(wv, [Out, In]), opts).data, TOL, 'linear y');
    const want = matmulBackwardRef(f64(xv, [B, T, In]), f64(wv, [Out, In]), f64(g, [B, T, Out]), opts);
    assertClose(await x.grad!.read(), want.da.data, TOL, 'linear dx');
    assertClose(await W.grad!.read(), want.db.data, TOL, 'linear dW');
    assertClose(await bias.grad!.read(), want.dbias!.data, TOL, 'linear db');
    const v = linear(tensor(dev, xv.slice(0, In)), W, bias);
    expect(v.shape).toEqual([Out]);
    assertClose(await v.read(), matmulRef(f64(xv.slice(0, In), [1, In]), f64(wv, [Out, In]), { transB: true, bias: f64(bv, [Out]) }).data, TOL, 'linear vector');
  });

  it('linear with a residual in the epilogue: contiguous, one row per batch entry (a strided slice), and copied', async () => {
    const [B, T, In, Out] = [3, 5, 8, 8];
    const xv = rng.uniform(B * T * In);
    const wv = rng.uniform(Out * In);
    const bv = rng.uniform(Out);
    const rv = rng.uniform(B * T * Out);
    const opts = { transB: true, bias: f64(bv, [Out]), activation: 'gelu' as const };
    for (const kernel of KERNELS) {
      // y = r + gelu(x·Wᵀ + b), r's gradient the output's.
      const x = tensor(dev, xv, [B, T, In], { requiresGrad: true });
      const W = tensor(dev, wv, [Out, In], { requiresGrad: true });
      const r = tensor(dev, rv, [B, T, Out], { requiresGrad: true });
      const g = rng.uniform(B * T * Out);
      let y: Tensor | null = null;
      scope(() => {
        y = matmul(x, W, { transB: true, bias: tensor(dev, bv), activation: 'gelu', residual: r, kernel });
        backward(y, tensor(dev, g, [B, T, Out]));
        return y;
      });
      const ref = matmulRef(f64(xv, [B, T, In]), f64(wv, [Out, In]), opts).data.map((v, i) => v + rv[i]!);
      assertClose(await y!.read(), ref, TOL, `${kernel} y`);
      const want = matmulBackwardRef(f64(xv, [B, T, In]), f64(wv, [Out, In]), f64(g, [B, T, Out]), opts);
      assertClose(await x.grad!.read(), want.da.data, TOL, `${kernel} dx`);
      assertClose(await W.grad!.read(), want.db.data, TOL, `${kernel} dW`);
      assertClose(await r.grad!.read(), g, { atol: 0, rtol: 0 }, `${kernel} dresidual`);
    }
    // The CLS rows of a (B, T, D) stream as the residual of a (B, 1, D) output: read in place.
    const first = (t: Tensor) => t.view([B, 1, Out], [T * Out, Out, 1], t.offset);
    const stream = tensor(dev, rv, [B, T, Out]);
    const xs = rng.uniform(B * In);
    const before = dev.counts.dispatches;
    const y1 = launchMatmul(tensor(dev, xs, [B, 1, In]), tensor(dev, wv, [Out, In]), { transB: true, residual: first(stream) });
    expect(dev.counts.dispatches - before).toBe(1);
    const plain = matmulRef(f64(xs, [B, 1, In]), f64(wv, [Out, In]), { transB: true }).data;
    assertClose(await y1.read(), plain.map((v, i) => v + rv[Math.floor(i / Out) * T * Out + (i % Out)]!), TOL, 'strided residual');
    // A transposed residual cannot be read row by row: copied first.
    const tr = tensor(dev, rv.slice(0, Out * Out), [Out, Out]);
    const xm = rng.uniform(Out * In);
    const y2 = launchMatmul(tensor(dev, xm, [Out, In]), tensor(dev, wv, [Out, In]), { transB: true, residual: transpose(tr, 0, 1) });
    const want2 = matmulRef(f64(xm, [Out, In]), f64(wv, [Out, In]), { transB: true }).data.map((v, i) => v + rv[(i % Out) * Out + Math.floor(i / Out)]!);
    assertClose(await y2.read(), want2, TOL, 'transposed residual');
    expect(() => launchMatmul(tensor(dev, xs, [B, 1, In]), tensor(dev, wv, [Out, In]), { transB: true, residual: stream })).toThrow(/residual f32\[3, 5, 8\] must be f32 of the output's shape \[3, 1, 8\]/);
  });
});


describe('default matmul kernel', () => {
  /** A device that only answers what defaultKernel asks. */
  const stub = (info: Partial<Device['info']>, features: string[]) =>
    ({
      info: { name: 'llvmpipe (LLVM 15.0.6, 256 bits)', architecture: 'software', isFallback: false, subgroupMinSize: 8, subgroupMaxSize: 8, hostVectorRegisters: 16, ...info },
      has: (f: string) => features.includes(f),
    }) as unknown as Device;

  it('takes the wide subgroup block on a CPU adapter whose host has 32 vector registers', () => {
    expect(defaultKernel(stub({}, ['subgroups']))).toBe('subgroup');
    expect(defaultKernel(stub({ hostVectorRegisters: 32 }, ['subgroups']))).toBe('subgroup-wide');
    expect(defaultKernel(stub({ hostVectorRegisters: 32 }, []))).toBe('rows');
    expect(defaultKernel(stub({ hostVectorRegisters: 32, subgroupMinSize: 4, subgroupMaxSize: 32 }, ['subgroups']))).toBe('rows');
    expect(defaultKernel(stub({ name: 'NVIDIA H200', architecture: 'hopper', hostVectorRegisters: 32 }, ['subgroups']))).toBe('tiled');
  });

  it('keeps the narrow block where N fills the wide one poorly', () => {
    // Subgroup 8: narrow blocks of 16 columns, wide of 32.
    const fit = (N: number) => fitColumns('subgroup-wide', N, 8);
    expect([192, 576, 768, 64, 32, 17, 31].map(fit)).toEqual(Array(7).fill('subgroup-wide'));
    expect([200, 16, 1, 48, 208].map(fit)).toEqual(Array(5).fill('subgroup'));
    expect(fitColumns('subgroup', 192, 8)).toBe('subgroup');
    expect(fitColumns('subgroup-wide', 200, 0)).toBe('subgroup-wide');
  });
});
