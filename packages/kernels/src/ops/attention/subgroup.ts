// Subgroup attention kernels (CPU adapters with a fixed subgroup of 8, head dim a multiple of 4 up
// to SG_MAX_HEAD_DIM): tiles go straight from storage to the lanes by subgroupBroadcast, and the
// backward is one kernel per head that also accumulates dQ (10·N²·d flops).
//
// Shaped like the 'subgroup' matmul: a workgroup is one subgroup, each lane owns SG_ROWS rows and
// walks the other operand in tiles of SG_TILE rows straight from storage. For each 4-wide chunk
// of the head dimension every lane loads a vec4 of SG_TILE / 8 tile rows and subgroupBroadcast
// hands them to the other lanes: a tile element costs one gather for all 8 lanes and feeds
// SG_ROWS dot products (or multiply-adds) per lane. No workgroup memory. On lavapipe at
// ViT-B/16@448 (process CPU time, other jobs sharing the cores, so ±10%):
// - operands bound as vec4 arrays, one load per chunk: forward 1.1×, backward 1.3× faster than
//   four scalar loads (and than masking a ragged last chunk, hence d % 4 = 0);
// - the per-row accumulators (o, dk, dv, dq) are read and written once per tile and chunk, so the
//   loops that update them take 32 tile rows; the score loops take them in slices of 16
//   (SG_ROWS × 16 running sums): the forward runs 1.2× faster than with 16-row tiles or with one
//   32-row score loop;
// - a store whose address differs per lane is scalarised, the dearest access of all: adding dQ
//   to storage after every 32-key block took a fifth of the backward; once per SG_BLOCKS blocks
//   the backward runs 1.15× faster;
// - one backward kernel (dQ from the dS that the dK/dV pass computes anyway) instead of a second
//   pass over query rows that recomputes P and dP: 1.15×.
import { type KernelSpec, memoSpecs } from '../../kernel.js';
import { BACKWARD_OPERANDS, FORWARD_OPERANDS, LOG2E, MASKED, eachRow, passParams, range, rowFn } from './common.js';

/** Rows a lane owns (queries in the forward, keys in the backward): 8 lanes cover 32. */
export const SG_ROWS = 4;
/** Rows of the other operand per step: 8 groups of 4, one per lane in the backward's dQ hand-over. */
const SG_TILE = 32;
/** Score loops run over the tile in slices of this many rows. */
const SG_SLICE = 16;
/** Blocks of 32 keys per backward step: dQ of a query tile is added to storage once per step. */
const SG_BLOCKS = 4;

/**
 * Widest head dim of the subgroup kernels, the vec4 capacity of a row's private accumulators
 * times 4: one pipeline per kernel (the loops run to p.d4), since lavapipe takes up to 20 s to
 * compile the backward. ViT-B and CLIP heads are 64 wide; wider ones take the portable kernels.
 */
export const SG_MAX_HEAD_DIM = 64;
const SG_D4 = SG_MAX_HEAD_DIM / 4;

/** WGSL: `fn ld_<B>(a: u32) -> vec4<f32>`, the vec4 at element a (a multiple of 4) of a vec4 binding. */
function sgLoader(buffer: string): string {
  return `fn ld_${buffer}(a: u32) -> vec4<f32> { return ${buffer}[a >> 2u]; }`;
}

/** WGSL: `buffer[at + 4c ..] op value` over the row's chunks c, `value` a vec4 expression of c. */
function sgStoreRow(buffer: string, at: string, value: string, op = '='): string {
  return `for (var c = 0u; c < p.d4; c++) { let v = ${value}; ${range(4).map((t) => `${buffer}[${at} + 4u * c + ${t}u] ${op} v[${t}];`).join(' ')} }`;
}

/** WGSL: `let <v>0..` = chunk c of tile rows first..first+n-1, from the row addresses `<v>a<l>` (row 8l + lane). */
function sgTile(buffer: string, v: string, n: number, first = 0): string {
  const loads = range(n / 8).map((l) => `        let ${v}l${l + first / 8} = ld_${buffer}(${v}a${l + first / 8} + 4u * c);`);
  const casts = range(n).map((t) => `        let ${v}${t + first} = subgroupBroadcast(${v}l${(t + first) >> 3}, ${(t + first) & 7}u);`);
  return [...loads, ...casts].join('\n');
}

/** WGSL: acc<r>_<g> (vec4 over tile rows 4g..4g+3) += own row chunk x<r> · tile rows t<4g>..t<4g+3>, for tile rows first..first+n-1. */
function sgScores(acc: string, x: string, t: string, n: number, first: number): string {
  const L: string[] = [];
  const groups = range(n / 4).map((g) => g + first / 4);
  // The tile chunks transposed: column e of four rows (vec4 components are separate registers on
  // a CPU adapter, so this costs nothing).
  for (const g of groups) for (const e of 'xyzw') L.push(`        let ${t}t${e}${g} = vec4<f32>(${range(4).map((u) => `${t}${4 * g + u}.${e}`).join(', ')});`);
  for (const r of range(SG_ROWS)) for (const g of groups) for (const e of 'xyzw') L.push(`        ${acc}${r}_${g} += ${x}${r}.${e} * ${t}t${e}${g};`);
  return L.join('\n');
}

/** WGSL: `<arr>[(<base> + r)·D4 + c] = that · f<r> + Σ_t w<r>_<t/4>[t%4] · t<t>` over the lane's rows and the tile. */
function sgAccumulate(arr: string, w: string, t: string, base = '', factor?: string): string {
  return range(SG_ROWS)
    .map((r) => {
      const at = `${arr}[(${base}${r}u) * D4 + c]`;
      const terms = range(SG_TILE).map((u) => `${w}${r}_${u >> 2}.${'xyzw'[u & 3]} * ${t}${u}`);
      return `        ${at} = ${at}${factor ? ` * ${factor}${r}` : ''} + ${terms.join(' + ')};`;
    })
    .join('\n');
}

/** Forward: lane owns SG_ROWS queries; online softmax over key tiles of SG_TILE. */
function forwardSpec(): KernelSpec {
  const each = eachRow(SG_ROWS);
  const groups = range(SG_TILE / 4);
  const vec = (f: (g: number) => string) => groups.map(f).join('\n');
  return {
    name: 'attention_forward_sg',
    storage: [
      { name: 'Q', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'K', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'V', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'O', access: 'read_write', type: 'array<f32>' },
      { name: 'Lse', access: 'read_write', type: 'array<f32>' },
    ],
    params: passParams(FORWARD_OPERANDS, false),
    workgroupSize: [8],
    enable: ['subgroups'],
    code: `
const D4: u32 = ${SG_D4}u;
${rowFn('q')}
${rowFn('k')}
${rowFn('v')}
${rowFn('o')}
${sgLoader('Q')}
${sgLoader('K')}
${sgLoader('V')}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let row0 = wid.x * ${8 * SG_ROWS}u;
  var o: array<vec4<f32>, ${SG_ROWS * SG_D4}>;
  for (var r = 0u; r < ${SG_ROWS}u; r++) { for (var c = 0u; c < p.d4; c++) { o[r * D4 + c] = vec4<f32>(0.0); } }
${each((r) => `  let i${r} = row0 + lane * ${SG_ROWS}u + ${r}u;
  let qa${r} = q_at(b, h, min(i${r}, p.nq - 1u));
  var m${r} = ${MASKED};
  var l${r} = 0.0;
  var lim${r} = p.key_len;`)}
  // Keys row i may see: j < lim_i. The subgroup's loop bound is the largest lim of its rows.
  var kend = p.key_len;
  if (p.causal != 0u) {
    kend = min(kend, min(row0 + ${8 * SG_ROWS}u, p.nq));
${each((r) => `    lim${r} = min(lim${r}, i${r} + 1u);`)}
  }
  for (var j0 = 0u; j0 < kend; j0 += ${SG_TILE}u) {
${range(SG_TILE / 8)
  .map((l) => `    let ka${l} = k_at(b, h, min(j0 + ${8 * l}u + lane, p.nk - 1u));\n    let va${l} = v_at(b, h, min(j0 + ${8 * l}u + lane, p.nk - 1u));`)
  .join('\n')}
${each((r) => vec((g) => `    var s${r}_${g} = vec4<f32>(0.0);`))}
${range(SG_TILE / SG_SLICE)
  .map(
    (sl) => `    for (var c = 0u; c < p.d4; c++) {
${sgTile('K', 'k', SG_SLICE, sl * SG_SLICE)}
${each((r) => `        let q${r} = ld_Q(qa${r} + 4u * c);`)}
${sgScores('s', 'q', 'k', SG_SLICE, sl * SG_SLICE)}
    }`,
  )
  .join('\n')}
${each(
  (r) => `${vec((g) => `    let ms${r}_${g} = select(vec4<f32>(${MASKED}), s${r}_${g} * p.scale_log2, vec4<u32>(j0 + ${4 * g}u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(lim${r}));`)}
    let mx${r} = ${groups.map((g) => `ms${r}_${g}`).reduce((a, b) => `max(${a}, ${b})`)};
    let mt${r} = max(m${r}, max(max(mx${r}.x, mx${r}.y), max(mx${r}.z, mx${r}.w)));
    let alpha${r} = exp2(m${r} - mt${r});
${vec((g) => `    let w${r}_${g} = exp2(ms${r}_${g} - vec4<f32>(mt${r}));`)}
    l${r} = l${r} * alpha${r} + dot(${groups.map((g) => `w${r}_${g}`).join(' + ')}, vec4<f32>(1.0));
    m${r} = mt${r};`,
)}
    for (var c = 0u; c < p.d4; c++) {
${sgTile('V', 'v', SG_TILE)}
${sgAccumulate('o', 'w', 'v', '', 'alpha')}
    }
  }
${each(
  (r) => `  if (i${r} < p.nq) {
    let oa = o_at(b, h, i${r});
    let inv = 1.0 / l${r};
    ${sgStoreRow('O', 'oa', `o[${r}u * D4 + c] * inv`)}
    Lse[p.lse_off + (b * p.heads + h) * p.nq + i${r}] = (m${r} + log2(l${r})) * ${Math.LN2};
  }`,
)}
}`,
  };
}

/**
 * Backward in one kernel, one workgroup per head: dQ then has a single writer and needs no
 * atomics (the price: B·H workgroups, which keeps a CPU adapter's threads busy from one ViT image
 * up, not hundreds of GPU cores). After D = rowsum(dO ⊙ O) and dQ = 0, it walks key blocks of
 * SG_BLOCKS × 32 keys (lane: SG_ROWS keys of each 32) and, per block, query tiles of 32: it
 * recomputes Pᵀ and dPᵀ for the lane's keys, adds into dV and dK (private, stored once per
 * block), and hands dS over the lanes so that each lane adds dS·K of the block into its 4
 * queries' dQ rows in storage.
 */
function backwardSpec(shared: boolean): KernelSpec {
  // With `shared`, dQ, dK and dV are views of one buffer bound once as DQ (writable bindings may not alias).
  const [DQ, DK, DV] = shared ? ['DQ', 'DQ', 'DQ'] : ['DQ', 'DK', 'DV'];
  const each = eachRow(SG_ROWS);
  const groups = range(SG_TILE / 4);
  const vec = (f: (g: number) => string) => groups.map(f).join('\n');
  const bcastVec = (src: string, g: number) => `vec4<f32>(${range(4).map((u) => `subgroupBroadcast(${src}${(4 * g + u) >> 3}, ${(4 * g + u) & 7}u)`).join(', ')})`;
  const keyRows = (first: string) =>
    each((r) => `      let j${r} = ${first} + lane * ${SG_ROWS}u + ${r}u;
      let ka${r} = k_at(b, h, min(j${r}, p.nk - 1u));`);
  return {
    name: 'attention_backward_sg',
    variant: shared ? 'shared' : '',
    storage: [
      { name: 'Q', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'K', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'V', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'O', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'DO', access: 'read', type: 'array<vec4<f32>>' },
      { name: 'Lse', access: 'read', type: 'array<f32>' },
      { name: 'Delta', access: 'read_write', type: 'array<f32>' },
      { name: 'DQ', access: 'read_write', type: 'array<f32>' },
      ...(shared
        ? []
        : [
            { name: 'DK', access: 'read_write' as const, type: 'array<f32>' },
            { name: 'DV', access: 'read_write' as const, type: 'array<f32>' },
          ]),
    ],
    params: passParams(BACKWARD_OPERANDS, true),
    workgroupSize: [8],
    enable: ['subgroups'],
    code: `
const D4: u32 = ${SG_D4}u;
const KB: u32 = ${SG_BLOCKS}u;
${['q', 'k', 'v', 'o', 'do', 'dq', 'dk', 'dv'].map(rowFn).join('\n')}
${['Q', 'K', 'V', 'O', 'DO'].map(sgLoader).join('\n')}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  let rows = wid.y * p.nq;
  for (var i = lane; i < p.nq; i += 8u) {
    let oa = o_at(b, h, i);
    let ga = do_at(b, h, i);
    var dl = 0.0;
    for (var c = 0u; c < p.d4; c++) { dl += dot(ld_DO(ga + 4u * c), ld_O(oa + 4u * c)); }
    Delta[rows + i] = dl;
    let qd = dq_at(b, h, i);
    ${sgStoreRow(DQ, 'qd', 'vec4<f32>(0.0)')}
  }
  storageBarrier();
  // Per lane: dk, dv of its keys in each 32-key block; dS of the tile (wp: own keys, es: the
  // lane's 4 queries against every key); dQ of its queries over the step's blocks.
  var dk: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * SG_D4}>;
  var dv: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * SG_D4}>;
  var wp: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * 8}>;
  var es: array<vec4<f32>, ${SG_BLOCKS * SG_ROWS * 8}>;
  var dqp: array<vec4<f32>, ${4 * SG_D4}>;
  for (var col0 = 0u; col0 < p.nk; col0 += KB * 32u) {
    // Only the head's d4 chunks of each row: the arrays are sized for the widest head.
    for (var r = 0u; r < KB * ${SG_ROWS}u; r++) { for (var c = 0u; c < p.d4; c++) { dk[r * D4 + c] = vec4<f32>(0.0); dv[r * D4 + c] = vec4<f32>(0.0); } }
    // Keys past key_len get no gradient; with the causal mask, query rows before the block's
    // first key see none of it.
    let kb_end = min(KB, (max(p.key_len, col0) - col0 + 31u) / 32u);
    var i0 = 0u;
    if (p.causal != 0u) { i0 = col0; }
    var iend = p.nq;
    if (col0 >= p.key_len) { iend = 0u; }
    for (var t0 = i0; t0 < iend; t0 += ${SG_TILE}u) {
${range(SG_TILE / 8)
  .map(
    (l) => `      let il${l} = min(t0 + ${8 * l}u + lane, p.nq - 1u);
      let xa${l} = q_at(b, h, il${l});
      let ya${l} = do_at(b, h, il${l});
      let ll${l} = Lse[p.lse_off + rows + il${l}] * ${LOG2E};
      let dl${l} = Delta[rows + il${l}];`,
  )
  .join('\n')}
${vec((g) => `      let la${g} = ${bcastVec('ll', g)};\n      let da${g} = ${bcastVec('dl', g)};\n      let ia${g} = vec4<u32>(t0 + ${4 * g}u) + vec4<u32>(0u, 1u, 2u, 3u);`)}
      for (var kb = 0u; kb < kb_end; kb++) {
${keyRows('col0 + 32u * kb')}
${each((r) => `      let va${r} = v_at(b, h, min(j${r}, p.nk - 1u));\n      let live${r} = vec4<bool>(j${r} < p.key_len);`)}
${each((r) => vec((g) => `      var s${r}_${g} = vec4<f32>(0.0);\n      var t${r}_${g} = vec4<f32>(0.0);`))}
${range(SG_TILE / SG_SLICE)
  .map(
    (sl) => `      for (var c = 0u; c < p.d4; c++) {
${sgTile('Q', 'x', SG_SLICE, sl * SG_SLICE)}
${each((r) => `        let kr${r} = ld_K(ka${r} + 4u * c);`)}
${sgScores('s', 'kr', 'x', SG_SLICE, sl * SG_SLICE)}
      }
      for (var c = 0u; c < p.d4; c++) {
${sgTile('DO', 'y', SG_SLICE, sl * SG_SLICE)}
${each((r) => `        let vr${r} = ld_V(va${r} + 4u * c);`)}
${sgScores('t', 'vr', 'y', SG_SLICE, sl * SG_SLICE)}
      }`,
  )
  .join('\n')}
${each((r) =>
  vec(
    (g) => `      var ok${r}_${g} = (ia${g} < vec4<u32>(iend)) & live${r};
      if (p.causal != 0u) { ok${r}_${g} = ok${r}_${g} & (vec4<u32>(j${r}) <= ia${g}); }
      let p${r}_${g} = select(vec4<f32>(0.0), exp2(s${r}_${g} * p.scale_log2 - la${g}), ok${r}_${g});
      let w${r}_${g} = p${r}_${g} * (t${r}_${g} - da${g});
      wp[(kb * ${SG_ROWS}u + ${r}u) * 8u + ${g}u] = w${r}_${g} * p.scale;`,
  ),
)}
      for (var c = 0u; c < p.d4; c++) {
${sgTile('DO', 'y', SG_TILE)}
${sgAccumulate('dv', 'p', 'y', `kb * ${SG_ROWS}u + `)}
      }
      for (var c = 0u; c < p.d4; c++) {
${sgTile('Q', 'x', SG_TILE)}
${sgAccumulate('dk', 'w', 'x', `kb * ${SG_ROWS}u + `)}
      }
      }
      // dQ: lane m takes the tile's queries t0 + 4m .. + 3 (group m of every lane's dS). Turn u
      // of the rotation hands lane m the dS of lane m - u by subgroupShuffle; es files it by
      // source lane, so that the K rows can then go to all lanes by subgroupBroadcast.
      for (var kb = 0u; kb < kb_end; kb++) {
        for (var u = 0u; u < 8u; u++) {
          let src = (lane - u) & 7u;
${each((r) => `          es[(kb * 8u + src) * ${SG_ROWS}u + ${r}u] = subgroupShuffle(wp[(kb * ${SG_ROWS}u + ${r}u) * 8u + ((lane + u) & 7u)], src);`)}
        }
      }
      for (var r = 0u; r < 4u; r++) { for (var c = 0u; c < p.d4; c++) { dqp[r * D4 + c] = vec4<f32>(0.0); } }
      for (var kb = 0u; kb < kb_end; kb++) {
${keyRows('col0 + 32u * kb')}
${range(8)
  .map((l) => each((r) => `      let e${l}_${r} = es[(kb * 8u + ${l}u) * ${SG_ROWS}u + ${r}u];`))
  .join('\n')}
      for (var c = 0u; c < p.d4; c++) {
${each((r) => `        let kr${r} = ld_K(ka${r} + 4u * c);`)}
${range(8)
  .map((l) => each((r) => `        let kk${l}_${r} = subgroupBroadcast(kr${r}, ${l}u);`))
  .join('\n')}
${range(4)
  .map((qi) => `        dqp[${qi}u * D4 + c] += ${range(8)
    .flatMap((l) => range(SG_ROWS).map((r) => `e${l}_${r}.${'xyzw'[qi]} * kk${l}_${r}`))
    .join(' + ')};`)
  .join('\n')}
      }
      }
      let tq = t0 + 4u * lane;
${range(4)
  .map(
    (qi) => `      if (tq + ${qi}u < iend) {
        let qd = dq_at(b, h, tq + ${qi}u);
        ${sgStoreRow(DQ, 'qd', `dqp[${qi}u * D4 + c]`, '+=')}
      }`,
  )
  .join('\n')}
    }
    for (var kb = 0u; kb < KB; kb++) {
${keyRows('col0 + 32u * kb')}
${each(
  (r) => `      if (j${r} < p.nk) {
        let kd = dk_at(b, h, j${r});
        let vd = dv_at(b, h, j${r});
        ${sgStoreRow(DK, 'kd', `dk[(kb * ${SG_ROWS}u + ${r}u) * D4 + c] * p.scale`)}
        ${sgStoreRow(DV, 'vd', `dv[(kb * ${SG_ROWS}u + ${r}u) * D4 + c]`)}
      }`,
)}
    }
  }
}`,
  };
}

/** The forward: online softmax over key tiles, SG_ROWS queries per lane. */
export const subgroupForwardSpec = memoSpecs(() => forwardSpec());

/**
 * The backward (dQ, dK, dV in one kernel per head). With `shared`, dQ, dK and dV are views of one
 * buffer (a dqkv projection gradient) bound once: WebGPU does not let two writable bindings alias.
 */
export const subgroupBackwardSpec = memoSpecs((shared: boolean) => backwardSpec(shared));
