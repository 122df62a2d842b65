// Differentiable matmul and linear layer: forward launch and backward rule side by side.
//
// With an activation the backward needs the pre-activation z. The forward kernel writes z next to
// the output when a gradient will be needed (one extra store per output element, the same memory
// an unfused bias + activation would hold anyway); recomputing z in backward would cost a second
// full matmul.
import { launchBinary, launchCopy } from '../ops/elementwise.js';
import { type MatmulActivation, type MatmulOptions, launchMatmul, launchMatmulWithPre, launchMatmulWithRowSum } from '../ops/matmul/index.js';
import { type Tensor, isGradEnabled, record } from '../tensor.js';
import { reshape } from '../functional.js';

/**
 * act(alpha · op(A)·op(B) + bias) + residual, batched with broadcasting (see launchMatmul).
 * Gradients for A, B, the bias and the residual; a broadcast operand's gradient is summed over the
 * batch it was shared by.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const { transA = false, transB = false, bias, activation, alpha = 1, residual } = opts;
  // The residual is added after the activation: its gradient is the output's, unchanged.
  const inputs = [a, b, bias ?? null, residual ?? null].filter((t): t is Tensor => t !== null);
  const needsGrad = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const { out, pre } = activation && needsGrad ? launchMatmulWithPre(a, b, opts) : { out: launchMatmul(a, b, opts), pre: null };
  // dA needs B and dB needs A; z only with an activation. z is disposed below, a and b may be by
  // the caller: the tape keeps them pinned until the rule has run.
  record(
    'matmul',
    out,
    inputs,
    (g, { needs }) => {
      const [needA, needB] = needs;
      const needBias = bias ? needs[2] : false;
      const needResidual = residual ? needs[inputs.length - 1] : false;
      const dz = pre ? launchBinary(`${activation!}_grad`, pre, g) : g;
      const da = needA ? gradA(dz, b, transA, transB, alpha) : null;
      // With B read transposed (a linear layer), dB's kernel reads dzᵀ as its A: it sums dz's
      // columns, the bias gradient, on the way (backward's sumTo adds up any batch dims left).
      const sumBias = Boolean(needB && needBias && transB);
      const { db, rowSum } = needB ? gradB(a, dz, a.rank, b.rank, transA, transB, alpha, sumBias) : { db: null, rowSum: null };
      const dbias = needBias ? (rowSum ? biasShaped(rowSum, bias!) : dz) : null;
      if (dbias !== dz && dz !== g) dz.dispose();
      const dres = needResidual ? g : null;
      return bias ? [da, db, dbias, dres] : [da, db, dres];
    },
    [b.requiresGrad ? a : null, a.requiresGrad ? b : null, pre].filter((t): t is Tensor => t !== null),
  );
  pre?.dispose();
  return out;
}

/** dA of z = alpha · op(A)·op(B): alpha · dz·op(B)ᵀ, or its transpose when A was read transposed. */
function gradA(dz: Tensor, b: Tensor, transA: boolean, transB: boolean, alpha: number): Tensor {
  return transA ? launchMatmul(b, dz, { transA: transB, transB: true, alpha }) : launchMatmul(dz, b, { transB: !transB, alpha });
}

/**
 * dB of z = alpha · op(A)·op(B): alpha · op(A)ᵀ·dz, or its transpose when B was read transposed.
 * A 2-D B shared by a batch (a linear layer's weight) gets the batch folded into the inner dim of
 * one matmul, instead of a gradient per batch entry reduced afterwards. With `sumRows` (B read
 * transposed, so dzᵀ is the kernel's A) the same kernel also returns dz's column sums (over all
 * rows, per batch entry where the batch was not folded).
 */
function gradB(
  a: Tensor,
  dz: Tensor,
  rankA: number,
  rankB: number,
  transA: boolean,
  transB: boolean,
  alpha: number,
  sumRows: boolean,
): { db: Tensor; rowSum: Tensor | null } {
  const mm = (x: Tensor, y: Tensor, o: MatmulOptions) => (sumRows ? launchMatmulWithRowSum(x, y, o) : { out: launchMatmul(x, y, o), rowSum: null });
  if (rankB === 2 && rankA > 2 && !transA && a.isContiguous()) {
    const dc = dz.isContiguous() ? dz : launchCopy(dz);
    const rows = dc.size / dc.shape[dc.rank - 1]!;
    const a2 = a.view([rows, a.shape[a.rank - 1]!], [a.shape[a.rank - 1]!, 1], a.offset);
    const d2 = dc.view([rows, dc.shape[dc.rank - 1]!], [dc.shape[dc.rank - 1]!, 1], dc.offset);
    const r = transB ? mm(d2, a2, { transA: true, alpha }) : mm(a2, d2, { transA: true, alpha });
    a2.dispose();
    d2.dispose();
    if (dc !== dz) dc.dispose();
    return { db: r.out, rowSum: r.rowSum };
  }
  const r = transB ? mm(dz, a, { transA: true, transB: transA, alpha }) : mm(a, dz, { transA: !transA, alpha });
  return { db: r.out, rowSum: r.rowSum };
}

/** The bias gradient from dz's column sums: in the bias's own shape where it has as many elements. */
function biasShaped(rowSum: Tensor, bias: Tensor): Tensor {
  if (rowSum.size !== bias.size || rowSum.shape.join() === bias.shape.join()) return rowSum;
  const v = rowSum.view(bias.shape, bias.strides, rowSum.offset);
  rowSum.dispose();
  return v;
}

/** y = act(x·Wᵀ + b) (+ residual) with the weight stored (out, in) as in PyTorch; x is (..., in). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor, activation?: MatmulActivation, residual?: Tensor): Tensor {
  if (weight.rank !== 2 || x.shape[x.rank - 1] !== weight.shape[1]) {
    throw new Error(`linear: input [${x.shape.join(', ')}] does not match weight [${weight.shape.join(', ')}] (out, in)`);
  }
  const fused = { transB: true, bias, activation, ...(residual ? { residual } : {}) };
  if (x.rank >= 2) return matmul(x, weight, fused);
  if (residual) throw new Error('linear: a residual needs an input of rank 2 or more');
  const x2 = reshape(x, [1, x.shape[0]!]);
  const y2 = matmul(x2, weight, { transB: true, bias, activation });
  const y = reshape(y2, [weight.shape[0]!]);
  x2.dispose();
  y2.dispose();
  return y;
}
