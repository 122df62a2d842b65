// The check suite: the signature kernels against their float64 references at sizes that exercise
// every tile path, on whatever adapter runs the bench. A machine with only a GPU and this bundle
// (no test runner) can verify the kernels before timing them; each row is the worst error over its tolerance (≤ 1 passes).
import {
  type Device,
  type Tensor,
  attention,
  backward,
  crossEntropy,
  layerNorm,
  matmul,
  mul,
  scope,
  selfCheck,
  sum,
  tensor,
  vlfmAttention,
} from '@mpfgvc/kernels';
import { launchTopK } from '@mpfgvc/kernels/raw';
import {
  Rng,
  attentionBackwardRef,
  attentionRef,
  crossEntropyRef,
  f64,
  layerNormRef,
  matmulRef,
  topkRef,
  vlfmRef,
} from '@mpfgvc/kernels/testing';
import type { Row } from '../report.js';
import type { SuiteOptions } from './options.js';

/** max |got - want| / (atol + rtol·|want|): the test suite's tolerance rule; ≤ 1 passes. */
function excess(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / (atol + rtol * Math.abs(want[i]!));
    worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}

function row(name: string, shape: string, value: number): Row {
  return { suite: 'check', name, shape, metric: 'max error / tolerance', value, unit: '', note: value <= 1 ? 'ok' : 'FAILED' };
}

export async function checkSuite(dev: Device, opts: SuiteOptions = {}): Promise<Row[]> {
  const rng = new Rng(42);
  const rows: Row[] = [];
  for (const c of await selfCheck(dev)) rows.push(row(c.name, 'self-check', c.maxAbsError / c.tolerance));

  const [M, K, N] = opts.quick ? [7, 13, 5] : [131, 257, 67];
  const a = rng.normal(M * K);
  const b = rng.normal(N * K);
  const mm = matmul(tensor(dev, a, [M, K]), tensor(dev, b, [N, K]), { transB: true });
  rows.push(row('matmul (B transposed)', `${M}×${K}×${N}`, excess(await mm.read(), matmulRef(f64(a, [M, K]), f64(b, [N, K]), { transB: true }).data, 1e-4, 1e-4)));

  const [B, H, L, d] = opts.quick ? [1, 2, 9, 8] : [2, 3, 97, 64];
  const q = rng.normal(B * H * L * d);
  const k = rng.normal(B * H * L * d);
  const v = rng.normal(B * H * L * d);
  const go = rng.normal(B * H * L * d);
  const shp = [B, H, L, d];
  const tq = tensor(dev, q, shp, { requiresGrad: true });
  const tk = tensor(dev, k, shp, { requiresGrad: true });
  const tv = tensor(dev, v, shp, { requiresGrad: true });
  for (const causal of [false, true]) {
    const out = scope(() => attention(tq, tk, tv, { causal }));
    const ref = attentionRef(f64(q, shp), f64(k, shp), f64(v, shp), { causal });
    rows.push(row(`attention forward${causal ? ' (causal)' : ''}`, `B${B} H${H} N${L} d${d}`, excess(await out.read(), ref.out.data, 1e-5, 1e-4)));
    scope(() => backward(sum(mul(out, tensor(dev, go, shp)))));
    const g = attentionBackwardRef(f64(q, shp), f64(k, shp), f64(v, shp), f64(go, shp), { causal });
    const grads: [string, Tensor, Float64Array][] = [
      ['dq', tq, g.dq.data],
      ['dk', tk, g.dk.data],
      ['dv', tv, g.dv.data],
    ];
    for (const [name, t, want] of grads) {
      rows.push(row(`attention backward ${name}${causal ? ' (causal)' : ''}`, `B${B} H${H} N${L} d${d}`, excess(await t.grad!.read(), want, 1e-5, 1e-3)));
      t.grad!.dispose();
      t.grad = null;
    }
    out.dispose();
  }

  const [R, W] = opts.quick ? [3, 17] : [257, 769];
  const x = rng.normal(R * W, 3);
  const w = rng.normal(W);
  const bias = rng.normal(W);
  const ln = layerNorm(tensor(dev, x, [R, W]), tensor(dev, w, [W]), tensor(dev, bias, [W]), 1e-5);
  rows.push(row('layerNorm', `[${R}, ${W}]`, excess(await ln.read(), layerNormRef(f64(x, [R, W]), Float64Array.from(w), Float64Array.from(bias), 1e-5).y.data, 1e-5, 1e-4)));

  const C = opts.quick ? 5 : 201;
  const logits = rng.normal(R * C, 4);
  const labels = rng.ints(R, C);
  const ce = crossEntropy(tensor(dev, logits, [R, C]), labels, { labelSmoothing: 0.1 });
  rows.push(row('cross-entropy (smoothing 0.1)', `[${R}, ${C}]`, excess([await ce.item()], [crossEntropyRef(f64(logits, [R, C]), labels, 0.1)], 1e-6, 1e-5)));

  const [TB, TN, TK] = opts.quick ? [2, 16, 3] : [4, 784, 12];
  const scores = rng.normal(TB * TN);
  const ids = await launchTopK(tensor(dev, scores, [TB, TN]), TK).read();
  const want = topkRef(scores, TB, TN, TK);
  rows.push(row('SsVP top-k ids', `B${TB} N${TN} K${TK}`, Array.from(ids).every((id, i) => id === want[i]) ? 0 : Infinity));

  const [VB, VC, VD] = opts.quick ? [2, 3, 8] : [4, 200, 512];
  const vx = (n: number) => rng.normal(n);
  const [q0, k0, v0, kt, vt] = [vx(VB * VD), vx(VB * VD), vx(VB * VD), vx(VC * VD), vx(VC * VD)];
  const vl = vlfmAttention(tensor(dev, q0, [VB, VD]), tensor(dev, k0, [VB, VD]), tensor(dev, v0, [VB, VD]), tensor(dev, kt, [VC, VD]), tensor(dev, vt, [VC, VD]));
  const vref = vlfmRef(f64(q0, [VB, VD]), f64(k0, [VB, VD]), f64(v0, [VB, VD]), f64(kt, [VC, VD]), f64(vt, [VC, VD]));
  rows.push(row('VLFM cross-attention', `B${VB} C${VC} D${VD}`, excess(await vl.read(), vref.out.data, 1e-5, 1e-4)));
  await dev.sync();
  dev.trim();
  return rows;
}
