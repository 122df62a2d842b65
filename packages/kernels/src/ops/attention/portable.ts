// Portable attention kernels (any adapter): key or query tiles pass through workgroup memory, and
// since WGSL has no float atomics the backward takes two passes (14·N²·d flops), one over query
// rows (dQ, and D = rowsum(dO ⊙ O)), one over key rows (dK, dV). Each invocation owns whole rows
// (ROWS_PER_LANE of them): on a SIMD CPU adapter the lanes then vectorise the head dimension's
// loops with no cross-lane reduction, and the tile in workgroup memory is read by all rows of the
// block. Operands are bound as f32 arrays, so any head dim up to MAX_HEAD_DIM and any alignment.
import { type KernelSpec, memoSpecs } from '../../kernel.js';
import { LOG2E, MASKED, eachRow, passParams, range, rowFn } from './common.js';

/** Rows per tile in workgroup memory: a multiple of the 8-row step; two tiles stay within 16 KiB. */
function tileRows(d: number): number {
  let r = 32;
  while (r > 8 && r * d > 2048) r >>= 1;
  return r;
}

/**
 * Rows (queries, or keys in the dK/dV pass) per invocation, and invocations per workgroup: each
 * invocation owns ROWS_PER_LANE rows so that every tile element it loads feeds that many dot
 * products (2.3× the throughput of one row per invocation on lavapipe; 8 rows compile 5× slower
 * for another 1.3×). Workgroups of 32 invocations run the long ViT sequences 1.4× faster than 8
 * (fewer tile loads per row); short sequences (CLIP text) take 8. Only two sizes, since each
 * workgroup size is another pipeline to compile.
 */
export const ROWS_PER_LANE = 4;

/** Invocations per workgroup over n rows. */
export function blockLanes(n: number): number {
  return n <= 8 * ROWS_PER_LANE ? 8 : 32;
}

// The per-row vectors (q, o, dq, k, v, ...) are vec4 arrays walked by loops over D/4 with
// uniform indices, and each step handles 8 tile rows: one load of the 8 tile vectors feeds the
// dot products (or multiply-adds) of all rows the invocation owns. (Fully unrolled straight-line
// code would keep the vectors in SIMD registers but takes a CPU adapter's compiler minutes per
// pipeline; the loop bound is a uniform parameter, not the constant D4, so that the compiler does
// not unroll them either.)

/** WGSL: `a`'s dot products with the four tile rows `v<o>`..`v<o+3>`, as a vec4. */
const dots = (a: string, v: string, o: number) => `vec4<f32>(${range(4).map((t) => `dot(${a}, ${v}${o + t})`).join(', ')})`;

/** WGSL: `let <v>0..<v>7` = element c of tile rows g..g+7 of a workgroup tile. */
function tileRows8(tile: string, v: string): string {
  return range(8).map((t) => `          let ${v}${t} = ${tile}[(g + ${t}u) * D4 + c];`).join('\n');
}

/** WGSL: stores `value` (a vec4 expression of chunk c) to `buffer` at row address `at` over the row's chunks, dropping lanes past D. */
function storeRow(buffer: string, at: string, value: string, d: number): string {
  const lanes = range(4)
    .map((t) => (d % 4 === 0 ? `${buffer}[${at} + 4u * c + ${t}u] = v[${t}];` : `if (4u * c + ${t}u < D) { ${buffer}[${at} + 4u * c + ${t}u] = v[${t}]; }`))
    .join(' ');
  return `    for (var c = 0u; c < p.d4; c++) { let v = ${value}; ${lanes} }`;
}

/** WGSL: `fn ld_<B>(a: u32, c: u32) -> vec4<f32>`, elements c..c+3 of a row at a (zeros past D). */
function loader(buffer: string, d: number): string {
  const lane = (t: number) => (d % 4 === 0 || t === 0 ? `${buffer}[a + ${t}u]` : `select(0.0, ${buffer}[a + ${t}u], c + ${t}u < D)`);
  return `fn ld_${buffer}(a: u32, c: u32) -> vec4<f32> { return vec4<f32>(${range(4).map(lane).join(', ')}); }`;
}

/**
 * Cooperative load of rows r0.. of a (b, h) operand into a vec4 tile; rows from count up to the
 * next multiple of 8 are zero (the 8-row steps read them), rows beyond are never read.
 */
function loadTile(tile: string, buffer: string, at: string, rowsConst: string, count: string, scale = ''): string {
  return `    for (var e = lid.x; e < min(${rowsConst}, (${count} + 7u) & ~7u) * D4; e += WG_X) {
      let rr = e / D4;
      let c = (e % D4) * 4u;
      var val = vec4<f32>(0.0);
      if (rr < ${count}) { val = ld_${buffer}(${at}(b, h, r0 + rr) + c, c)${scale}; }
      ${tile}[e] = val;
    }`;
}

function headerConsts(d: number, tile: number): string {
  return `const D: u32 = ${d}u;\nconst D4: u32 = ${Math.ceil(d / 4)}u;\nconst BT: u32 = ${tile}u;`;
}

/**
 * A kernel's buffers: the operands it reads and writes (rows addressed through their strides in
 * the params), then the per-row scalars (log-sum-exp, D) it reads and writes.
 */
interface Buffers {
  read: string[];
  written: string[];
  rowsRead: string[];
  rowsWritten: string[];
}

function bindings(b: Buffers): KernelSpec['storage'] {
  const bind = (access: 'read' | 'read_write') => (name: string) => ({ name, access, type: 'array<f32>' });
  return [...[...b.read, ...b.rowsRead].map(bind('read')), ...[...b.written, ...b.rowsWritten].map(bind('read_write'))];
}

/** Lower-case names of the operands a kernel addresses, as its params and row functions name them. */
const operands = (b: Buffers) => [...b.read, ...b.written].map((n) => n.toLowerCase());

/** WGSL: each operand's row address function, and a loader for each operand read. */
function operandFns(b: Buffers, d: number): string {
  return [...operands(b).map(rowFn), ...b.read.map((n) => loader(n, d))].join('\n');
}

/**
 * WGSL: the loop over key tiles (rows j0.. of K and V in Ks and Vs) in steps of 8 keys g, for the
 * query rows i<r> an invocation owns; the causal mask lowers their key limits lim<r>.
 */
function overKeyTiles(each: ReturnType<typeof eachRow>, step: string): string {
  return `  var kend = p.key_len;
  if (p.causal != 0u) {
    kend = min(kend, min(row0 + WG_X * RPL, p.nq));
${each((r) => `    lim${r} = min(lim${r}, i${r} + 1u);`)}
  }
  for (var j0 = 0u; j0 < kend; j0 += BT) {
    let nj = min(BT, kend - j0);
    let r0 = j0;
${loadTile('Ks', 'K', 'k_at', 'BT', 'nj')}
${loadTile('Vs', 'V', 'v_at', 'BT', 'nj')}
    workgroupBarrier();
    for (var g = 0u; g < nj; g += 8u) {
${step}
    }
    workgroupBarrier();
  }`;
}

/**
 * A pass over query rows (the forward, the dQ pass): each invocation owns RPL rows, and K and V
 * pass through the workgroup tiles Ks and Vs; `main` is the entry point's body after b and h.
 */
function queryRowsPass(name: string, buffers: Buffers, scale: boolean, d: number, bc: number, br: number, rpl: number, main: string): KernelSpec {
  const d4 = Math.ceil(d / 4);
  return {
    name,
    variant: `d${d}_bc${bc}_r${rpl}`,
    storage: bindings(buffers),
    params: passParams(operands(buffers), scale),
    workgroupSize: [br],
    code: `
${headerConsts(d, bc)}
const RPL: u32 = ${rpl}u;
var<workgroup> Ks: array<vec4<f32>, ${bc * d4}>;
var<workgroup> Vs: array<vec4<f32>, ${bc * d4}>;
${operandFns(buffers, d)}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
${main}
}`,
  };
}

const FORWARD_BUFFERS: Buffers = { read: ['Q', 'K', 'V'], written: ['O'], rowsRead: [], rowsWritten: ['Lse'] };
const DQ_BUFFERS: Buffers = { read: ['Q', 'K', 'V', 'O', 'DO'], written: ['DQ'], rowsRead: ['Lse'], rowsWritten: ['Delta'] };
const DKV_BUFFERS: Buffers = { read: ['Q', 'K', 'V', 'DO'], written: ['DK', 'DV'], rowsRead: ['Lse', 'Delta'], rowsWritten: [] };

function forwardSpec(d: number, bc: number, br: number, rpl: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  const each = eachRow(rpl);
  return queryRowsPass('attention_forward', FORWARD_BUFFERS, false, d, bc, br, rpl, `  // Each invocation owns RPL query rows, WG_X apart: the key tile's loads are shared by all.
  let row0 = wid.x * WG_X * RPL;
  var q: array<vec4<f32>, ${rpl * d4}>;
  var o: array<vec4<f32>, ${rpl * d4}>;
${each((r) => `  let i${r} = row0 + ${r}u * WG_X + lid.x;
  let qa${r} = q_at(b, h, min(i${r}, p.nq - 1u));
  for (var c = 0u; c < p.d4; c++) { q[${r}u * D4 + c] = ld_Q(qa${r} + 4u * c, 4u * c) * p.scale_log2; o[${r}u * D4 + c] = vec4<f32>(0.0); }
  var m${r} = ${MASKED};
  var l${r} = 0.0;
  var lim${r} = p.key_len;`)}
  // Keys row i may see: j < lim_i. The block's loop bound is the largest lim of its rows.
${overKeyTiles(
  each,
  `${each((r) => `      var sa${r} = vec4<f32>(0.0);\n      var sb${r} = vec4<f32>(0.0);`)}
      for (var c = 0u; c < p.d4; c++) {
${tileRows8('Ks', 'k')}
${each((r) => `          let qr${r} = q[${r}u * D4 + c];\n          sa${r} += ${dots(`qr${r}`, 'k', 0)};\n          sb${r} += ${dots(`qr${r}`, 'k', 4)};`)}
      }
      let ja = vec4<u32>(j0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
      let jb = ja + vec4<u32>(4u);
${each(
  (r) => `      let ma${r} = select(vec4<f32>(${MASKED}), sa${r}, ja < vec4<u32>(lim${r}));
      let mb${r} = select(vec4<f32>(${MASKED}), sb${r}, jb < vec4<u32>(lim${r}));
      let mt${r} = max(m${r}, max(max(max(ma${r}.x, ma${r}.y), max(ma${r}.z, ma${r}.w)), max(max(mb${r}.x, mb${r}.y), max(mb${r}.z, mb${r}.w))));
      let alpha${r} = exp2(m${r} - mt${r});
      let pa${r} = exp2(ma${r} - vec4<f32>(mt${r}));
      let pb${r} = exp2(mb${r} - vec4<f32>(mt${r}));
      l${r} = l${r} * alpha${r} + dot(pa${r}, vec4<f32>(1.0)) + dot(pb${r}, vec4<f32>(1.0));
      m${r} = mt${r};`,
)}
      for (var c = 0u; c < p.d4; c++) {
${tileRows8('Vs', 'v')}
${each(
  (r) =>
    `          o[${r}u * D4 + c] = o[${r}u * D4 + c] * alpha${r} + ${range(8)
      .map((t) => `p${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * v${t}`)
      .join(' + ')};`,
)}
      }`,
)}
${each(
  (r) => `  if (i${r} < p.nq) {
    let oa = o_at(b, h, i${r});
    let inv = 1.0 / l${r};
${storeRow('O', 'oa', `o[${r}u * D4 + c] * inv`, d)}
    Lse[p.lse_off + (b * p.heads + h) * p.nq + i${r}] = (m${r} + log2(l${r})) * ${Math.LN2};
  }`,
)}`);
}

function backwardQuerySpec(d: number, bc: number, br: number, rpl: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  const each = eachRow(rpl);
  return queryRowsPass('attention_backward_dq', DQ_BUFFERS, true, d, bc, br, rpl, `  let row0 = wid.x * WG_X * RPL;
  let rows = (b * p.heads + h) * p.nq;
  var q: array<vec4<f32>, ${rpl * d4}>;
  var gr: array<vec4<f32>, ${rpl * d4}>;
  var dq: array<vec4<f32>, ${rpl * d4}>;
${each((r) => `  let i${r} = row0 + ${r}u * WG_X + lid.x;
  let ic${r} = min(i${r}, p.nq - 1u);
  let qa${r} = q_at(b, h, ic${r});
  let oa${r} = o_at(b, h, ic${r});
  let ga${r} = do_at(b, h, ic${r});
  var delta${r} = 0.0;
  for (var c = 0u; c < p.d4; c++) {
    q[${r}u * D4 + c] = ld_Q(qa${r} + 4u * c, 4u * c) * p.scale_log2;
    gr[${r}u * D4 + c] = ld_DO(ga${r} + 4u * c, 4u * c);
    dq[${r}u * D4 + c] = vec4<f32>(0.0);
    delta${r} += dot(gr[${r}u * D4 + c], ld_O(oa${r} + 4u * c, 4u * c));
  }
  let lse${r} = vec4<f32>(Lse[p.lse_off + rows + ic${r}] * ${LOG2E});
  var lim${r} = p.key_len;`)}
${overKeyTiles(
  each,
  `${each((r) => `      var sa${r} = vec4<f32>(0.0);\n      var sb${r} = vec4<f32>(0.0);\n      var ta${r} = vec4<f32>(0.0);\n      var tb${r} = vec4<f32>(0.0);`)}
      for (var c = 0u; c < p.d4; c++) {
${tileRows8('Ks', 'k')}
${tileRows8('Vs', 'v')}
${each(
  (r) => `          let qr${r} = q[${r}u * D4 + c];
          let gr${r} = gr[${r}u * D4 + c];
          sa${r} += ${dots(`qr${r}`, 'k', 0)};
          sb${r} += ${dots(`qr${r}`, 'k', 4)};
          ta${r} += ${dots(`gr${r}`, 'v', 0)};
          tb${r} += ${dots(`gr${r}`, 'v', 4)};`,
)}
      }
      let ja = vec4<u32>(j0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
      let jb = ja + vec4<u32>(4u);
${each(
  (r) => `      let wa${r} = select(vec4<f32>(0.0), exp2(sa${r} - lse${r}), ja < vec4<u32>(lim${r})) * (ta${r} - vec4<f32>(delta${r}));
      let wb${r} = select(vec4<f32>(0.0), exp2(sb${r} - lse${r}), jb < vec4<u32>(lim${r})) * (tb${r} - vec4<f32>(delta${r}));`,
)}
      for (var c = 0u; c < p.d4; c++) {
${tileRows8('Ks', 'k')}
${each(
  (r) =>
    `          dq[${r}u * D4 + c] += ${range(8)
      .map((t) => `w${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * k${t}`)
      .join(' + ')};`,
)}
      }`,
)}
${each(
  (r) => `  if (i${r} < p.nq) {
    let da = dq_at(b, h, i${r});
${storeRow('DQ', 'da', `dq[${r}u * D4 + c] * p.scale`, d)}
    Delta[rows + i${r}] = delta${r};
  }`,
)}`);
}

function backwardKeySpec(d: number, bq: number, br: number, rpl: number): KernelSpec {
  const d4 = Math.ceil(d / 4);
  const each = eachRow(rpl);
  return {
    name: 'attention_backward_dkv',
    variant: `d${d}_bq${bq}_r${rpl}`,
    storage: bindings(DKV_BUFFERS),
    params: passParams(operands(DKV_BUFFERS), true),
    workgroupSize: [br],
    code: `
${headerConsts(d, bq)}
const RPL: u32 = ${rpl}u;
var<workgroup> Qs: array<vec4<f32>, ${bq * d4}>;
var<workgroup> Gs: array<vec4<f32>, ${bq * d4}>;
var<workgroup> Ls: array<f32, ${bq}>;
var<workgroup> Ds: array<f32, ${bq}>;
${operandFns(DKV_BUFFERS, d)}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let b = wid.y / p.heads;
  let h = wid.y % p.heads;
  // Each invocation owns RPL keys, WG_X apart: the query tile's loads are shared by all.
  let col0 = wid.x * WG_X * RPL;
  var k: array<vec4<f32>, ${rpl * d4}>;
  var v: array<vec4<f32>, ${rpl * d4}>;
  var dk: array<vec4<f32>, ${rpl * d4}>;
  var dv: array<vec4<f32>, ${rpl * d4}>;
${each((r) => `  let j${r} = col0 + ${r}u * WG_X + lid.x;
  let ka${r} = k_at(b, h, min(j${r}, p.nk - 1u));
  let va${r} = v_at(b, h, min(j${r}, p.nk - 1u));
  for (var c = 0u; c < p.d4; c++) {
    k[${r}u * D4 + c] = ld_K(ka${r} + 4u * c, 4u * c);
    v[${r}u * D4 + c] = ld_V(va${r} + 4u * c, 4u * c);
    dk[${r}u * D4 + c] = vec4<f32>(0.0);
    dv[${r}u * D4 + c] = vec4<f32>(0.0);
  }
  let live${r} = vec4<bool>(j${r} < p.key_len);`)}
  let rows = (b * p.heads + h) * p.nq;
  // Keys past key_len get no gradient; with the causal mask, query rows before the block's
  // first key see none of it.
  var i0 = 0u;
  if (p.causal != 0u) { i0 = col0; }
  var iend = p.nq;
  if (col0 >= p.key_len) { iend = 0u; }
  for (var t0 = i0; t0 < iend; t0 += BT) {
    let ni = min(BT, iend - t0);
    let r0 = t0;
${loadTile('Qs', 'Q', 'q_at', 'BT', 'ni', ' * p.scale_log2')}
${loadTile('Gs', 'DO', 'do_at', 'BT', 'ni')}
    for (var ii = lid.x; ii < BT; ii += WG_X) {
      var lv = 0.0;
      var dl = 0.0;
      if (ii < ni) {
        lv = Lse[p.lse_off + rows + t0 + ii] * ${LOG2E};
        dl = Delta[rows + t0 + ii];
      }
      Ls[ii] = lv;
      Ds[ii] = dl;
    }
    workgroupBarrier();
    for (var g = 0u; g < ni; g += 8u) {
${each((r) => `      var sa${r} = vec4<f32>(0.0);\n      var sb${r} = vec4<f32>(0.0);\n      var ta${r} = vec4<f32>(0.0);\n      var tb${r} = vec4<f32>(0.0);`)}
      for (var c = 0u; c < p.d4; c++) {
${tileRows8('Qs', 'x')}
${tileRows8('Gs', 'y')}
${each(
  (r) => `          let kr${r} = k[${r}u * D4 + c];
          let vr${r} = v[${r}u * D4 + c];
          sa${r} += ${dots(`kr${r}`, 'x', 0)};
          sb${r} += ${dots(`kr${r}`, 'x', 4)};
          ta${r} += ${dots(`vr${r}`, 'y', 0)};
          tb${r} += ${dots(`vr${r}`, 'y', 4)};`,
)}
      }
      let ia = vec4<u32>(t0 + g) + vec4<u32>(0u, 1u, 2u, 3u);
      let ib = ia + vec4<u32>(4u);
      let la = vec4<f32>(Ls[g], Ls[g + 1u], Ls[g + 2u], Ls[g + 3u]);
      let lb = vec4<f32>(Ls[g + 4u], Ls[g + 5u], Ls[g + 6u], Ls[g + 7u]);
      let da = vec4<f32>(Ds[g], Ds[g + 1u], Ds[g + 2u], Ds[g + 3u]);
      let db = vec4<f32>(Ds[g + 4u], Ds[g + 5u], Ds[g + 6u], Ds[g + 7u]);
${each(
  (r) => `      // Row i sees key j when i < iend (tile tail), j < key_len and, causally, j ≤ i.
      var oka${r} = (ia < vec4<u32>(iend)) & live${r};
      var okb${r} = (ib < vec4<u32>(iend)) & live${r};
      if (p.causal != 0u) {
        oka${r} = oka${r} & (vec4<u32>(j${r}) <= ia);
        okb${r} = okb${r} & (vec4<u32>(j${r}) <= ib);
      }
      let pa${r} = select(vec4<f32>(0.0), exp2(sa${r} - la), oka${r});
      let pb${r} = select(vec4<f32>(0.0), exp2(sb${r} - lb), okb${r});
      let wa${r} = pa${r} * (ta${r} - da);
      let wb${r} = pb${r} * (tb${r} - db);`,
)}
      for (var c = 0u; c < p.d4; c++) {
${tileRows8('Qs', 'x')}
${tileRows8('Gs', 'y')}
${each(
  (r) => `          dv[${r}u * D4 + c] += ${range(8)
    .map((t) => `p${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * y${t}`)
    .join(' + ')};
          dk[${r}u * D4 + c] += ${range(8)
            .map((t) => `w${t < 4 ? 'a' : 'b'}${r}.${'xyzw'[t % 4]} * x${t}`)
            .join(' + ')};`,
)}
      }
    }
    workgroupBarrier();
  }
${each(
  (r) => `  if (j${r} < p.nk) {
    let kd = dk_at(b, h, j${r});
    let vd = dv_at(b, h, j${r});
    // dk accumulated ds·(scale·log2e·q): scale/(scale·log2e) = ln 2 restores scale·ds·q.
${storeRow('DK', 'kd', `dk[${r}u * D4 + c] * ${Math.LN2}`, d)}
${storeRow('DV', 'vd', `dv[${r}u * D4 + c]`, d)}
  }`,
)}
}`,
  };
}

/** The forward for head dim d in workgroups of br invocations. */
export const portableForwardSpec = memoSpecs((d: number, br: number) => forwardSpec(d, tileRows(d), br, ROWS_PER_LANE));

/** The dQ pass (which also writes D = rowsum(dO ⊙ O)) for head dim d in workgroups of br invocations. */
export const portableBackwardQuerySpec = memoSpecs((d: number, br: number) => backwardQuerySpec(d, tileRows(d), br, ROWS_PER_LANE));

/** The dK/dV pass for head dim d in workgroups of br invocations; reads D from the dQ pass. */
export const portableBackwardKeySpec = memoSpecs((d: number, br: number) => backwardKeySpec(d, tileRows(d), br, ROWS_PER_LANE));
