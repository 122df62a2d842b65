// Row lookups as differentiable ops: token embeddings (a table indexed by ids of any shape) and
// the per-batch token gather of SsVP. The gradient of the table is a deterministic scatter-add, so
// repeated ids accumulate identically on every run.
import { launchCopy } from '../ops/elementwise.js';
import { launchGatherRows, launchScatterAddRows } from '../ops/gather.js';
import { type Shape, type Tensor, contiguousStrides, record, shapeStr } from '../tensor.js';

/** A handle on `t` with a new shape: a view when t is contiguous, else a contiguous copy. */
function reshaped(t: Tensor, shape: Shape): Tensor {
  const src = t.isContiguous() ? t : launchCopy(t);
  const out = src.view(shape, contiguousStrides(shape), src.offset);
  if (src !== t) src.dispose();
  return out;
}

/** out[..., :] = table[ids[...], :] for table (V, D) f32 and ids i32 of any shape; (...ids.shape, D). */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  if (table.rank !== 2 || table.dtype !== 'f32' || ids.dtype !== 'i32') {
    throw new Error(`embedding: expected table f32 (V, D) and ids i32, got table ${table.dtype}${shapeStr(table.shape)}, ids ${ids.dtype}${shapeStr(ids.shape)}`);
  }
  const [v, d] = table.shape as [number, number];
  const n = ids.size;
  const x = reshaped(table, [1, v, d]);
  const flat = reshaped(ids, [1, n]);
  const rows = launchGatherRows(x, flat);
  x.dispose();
  flat.dispose();
  const out = reshaped(rows, [...ids.shape, d]);
  rows.dispose();
  return record(
    'embedding',
    out,
    [table],
    (g) => {
      const g3 = reshaped(g, [1, n, d]);
      const idx = reshaped(ids, [1, n]);
      const dx = launchScatterAddRows(g3, idx, v);
      g3.dispose();
      idx.dispose();
      const dtable = reshaped(dx, [v, d]);
      dx.dispose();
      return [dtable];
    },
    [ids],
  );
}

/** out[b, k, :] = x[b, idx[b, k], :] for x (B, N, D) f32 and idx (B, K) i32; (B, K, D). */
export function gatherRows(x: Tensor, idx: Tensor): Tensor {
  const out = launchGatherRows(x, idx);
  const rows = x.shape[1]!;
  return record('gather_rows', out, [x], (g) => [launchScatterAddRows(g, idx, rows)], [idx]);
}
