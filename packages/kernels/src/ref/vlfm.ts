// Float64 reference for VLFM cross-modal attention and its backward, from the math: per image b,
// keys K_0 = k0[b], K_c = kt[c−1], values likewise, s_i = scale·q0[b]·K_i, P = softmax(s),
// out = Σ_i P_i V_i; dV_i = P_i·dO, dP_i = dO·V_i, dS_i = P_i (dP_i − Σ_j P_j dP_j),
// dQ0 = scale·Σ_i dS_i K_i, dK_i = scale·dS_i·q0[b]; text gradients summed over the batch.
import type { F64 } from './array.js';

function probsOf(q0: F64, k0: F64, kt: F64, b: number, scale: number): Float64Array {
  const [, D] = q0.shape as [number, number];
  const C = kt.shape[0]!;
  const s = new Float64Array(C + 1);
  for (let i = 0; i <= C; i++) {
    let acc = 0;
    for (let e = 0; e < D; e++) acc += q0.data[b * D + e]! * (i === 0 ? k0.data[b * D + e]! : kt.data[(i - 1) * D + e]!);
    s[i] = acc * scale;
  }
  const m = Math.max(...s);
  let sum = 0;
  for (let i = 0; i <= C; i++) sum += Math.exp(s[i]! - m);
  return s.map((x) => Math.exp(x - m) / sum);
}

export function vlfmRef(q0: F64, k0: F64, v0: F64, kt: F64, vt: F64, scale?: number): { out: F64; probs: F64 } {
  const [B, D] = q0.shape as [number, number];
  const C = kt.shape[0]!;
  const sc = scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * D);
  const probs = new Float64Array(B * (C + 1));
  for (let b = 0; b < B; b++) {
    const P = probsOf(q0, k0, kt, b, sc);
    probs.set(P, b * (C + 1));
    for (let i = 0; i <= C; i++) {
      for (let e = 0; e < D; e++) out[b * D + e]! += P[i]! * (i === 0 ? v0.data[b * D + e]! : vt.data[(i - 1) * D + e]!);
    }
  }
  return { out: { data: out, shape: [B, D] }, probs: { data: probs, shape: [B, C + 1] } };
}

export function vlfmBackwardRef(q0: F64, k0: F64, v0: F64, kt: F64, vt: F64, dOut: F64, scale?: number): { dq0: F64; dk0: F64; dv0: F64; dkt: F64; dvt: F64 } {
  const [B, D] = q0.shape as [number, number];
  const C = kt.shape[0]!;
  const sc = scale ?? 1 / Math.sqrt(D);
  const dq0 = new Float64Array(B * D);
  const dk0 = new Float64Array(B * D);
  const dv0 = new Float64Array(B * D);
  const dkt = new Float64Array(C * D);
  const dvt = new Float64Array(C * D);
  for (let b = 0; b < B; b++) {
    const P = probsOf(q0, k0, kt, b, sc);
    const value = (i: number, e: number) => (i === 0 ? v0.data[b * D + e]! : vt.data[(i - 1) * D + e]!);
    const key = (i: number, e: number) => (i === 0 ? k0.data[b * D + e]! : kt.data[(i - 1) * D + e]!);
    const dP = new Float64Array(C + 1);
    for (let i = 0; i <= C; i++) for (let e = 0; e < D; e++) dP[i]! += dOut.data[b * D + e]! * value(i, e);
    let rowDot = 0;
    for (let i = 0; i <= C; i++) rowDot += P[i]! * dP[i]!;
    for (let i = 0; i <= C; i++) {
      const dS = P[i]! * (dP[i]! - rowDot) * sc;
      for (let e = 0; e < D; e++) {
        dq0[b * D + e]! += dS * key(i, e);
        const dk = dS * q0.data[b * D + e]!;
        const dv = P[i]! * dOut.data[b * D + e]!;
        if (i === 0) {
          dk0[b * D + e]! += dk;
          dv0[b * D + e]! += dv;
        } else {
          dkt[(i - 1) * D + e]! += dk;
          dvt[(i - 1) * D + e]! += dv;
        }
      }
    }
  }
  const bd = [B, D];
  const cd = [C, D];
  return {
    dq0: { data: dq0, shape: bd },
    dk0: { data: dk0, shape: bd },
    dv0: { data: dv0, shape: bd },
    dkt: { data: dkt, shape: cd },
    dvt: { data: dvt, shape: cd },
  };
}
