// Float64 references for the optimiser updates and gradient clipping, written from the update
// rules as published (AdamW: Loshchilov & Hutter, bias-corrected moments as in Adam; SGD as
// torch.optim.SGD documents it). Each step updates its arrays in place.

export interface AdamWRefState {
  m: Float64Array;
  v: Float64Array;
  step: number;
}

export function adamwRefStep(
  p: Float64Array,
  g: ArrayLike<number>,
  s: AdamWRefState,
  h: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number },
): void {
  s.step++;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]!;
    s.m[i] = h.beta1 * s.m[i]! + (1 - h.beta1) * gi;
    s.v[i] = h.beta2 * s.v[i]! + (1 - h.beta2) * gi * gi;
    const mHat = s.m[i]! / (1 - h.beta1 ** s.step);
    const vHat = s.v[i]! / (1 - h.beta2 ** s.step);
    p[i] = p[i]! - h.lr * h.weightDecay * p[i]! - h.lr * (mHat / (Math.sqrt(vHat) + h.eps));
  }
}

export interface SgdRefState {
  buf: Float64Array | null;
}

export function sgdRefStep(
  p: Float64Array,
  g: ArrayLike<number>,
  s: SgdRefState,
  h: { lr: number; momentum: number; dampening: number; nesterov: boolean; weightDecay: number },
): void {
  for (let i = 0; i < p.length; i++) {
    let d = g[i]! + h.weightDecay * p[i]!;
    if (h.momentum !== 0) {
      if (!s.buf) throw new Error('sgdRefStep: momentum needs a buffer');
      const first = Number.isNaN(s.buf[i]!);
      s.buf[i] = first ? d : h.momentum * s.buf[i]! + (1 - h.dampening) * d;
      d = h.nesterov ? d + h.momentum * s.buf[i]! : s.buf[i]!;
    }
    p[i] = p[i]! - h.lr * d;
  }
}

/** A momentum buffer that has not been written yet (the first step copies the gradient in). */
export function freshSgdBuffer(n: number): Float64Array {
  return new Float64Array(n).fill(NaN);
}

export function globalNormRef(xs: readonly ArrayLike<number>[]): number {
  let s = 0;
  for (const x of xs) for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}

/** Gradients scaled as clip_grad_norm_ does: by min(1, maxNorm / (norm + 1e-6)). */
export function clipRef(xs: readonly ArrayLike<number>[], maxNorm: number): Float64Array[] {
  const c = Math.min(1, maxNorm / (globalNormRef(xs) + 1e-6));
  return xs.map((x) => Float64Array.from(x as ArrayLike<number>, (v) => v * c));
}
