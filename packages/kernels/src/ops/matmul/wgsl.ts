// WGSL of the matmul kernels: one generated shader per variant (family, layouts, vec4 loads, f16
// operands, saved pre-activation), memoised; the epilogue is chosen by uniform parameters.
import { type KernelSpec } from '../../kernel.js';
import { ERF_WGSL, UNARY } from '../elementwise.js';
import { type MatmulActivation, type MatmulKernel, type TiledKernel, type Tiling, type WorkgroupTiling, TILED_TILINGS } from './kernels.js';

/** Row-major ('n') or column-major ('t') storage of one logical matrix. */
export type Layout = 'n' | 't';

export interface Variant {
  kernel: MatmulKernel;
  /** Register tiling of the rows and subgroup families. */
  tiling: Tiling | null;
  /** Subgroup size of the subgroup families, else 0. */
  sg: number;
  la: Layout;
  lb: Layout;
  /**
   * Layouts read from p.ta / p.tb instead of compiled in: the tiled kernels touch storage only
   * to fill their tiles, and on lavapipe each of their pipelines costs seconds to compile.
   */
  layoutParam: boolean;
  /** vec4 loads (every offset, ld and batch stride a multiple of 4 elements). */
  vec: boolean;
  /**
   * vec4 stores of Out (and Pre): N a multiple of 4, so each row starts on a vec4. The epilogue
   * then runs once per 4 outputs: on a CPU adapter a store whose address differs per lane is a
   * scalar store per lane, and per output it cost as much as the K = 64 products before it.
   */
  vout: boolean;
  /** A / B stored as f16 (accumulation is f32 either way). */
  fa: boolean;
  fb: boolean;
  pre: boolean;
  /** Also write Σ_k op(A)[m][k] per output row (before alpha) to RowSum: a bias gradient folded into dW. */
  rowSum: boolean;
}

// The epilogue is chosen by uniform parameters, not by variant: it runs once per output (or per
// four with vout), and every variant costs a driver compile (seconds on lavapipe for the unrolled
// 'rows' kernels).
export const ACTIVATIONS: MatmulActivation[] = ['gelu', 'quick_gelu', 'relu'];

const PARAMS: [string, 'u32' | 'f32'][] = [
  ['M', 'u32'],
  ['N', 'u32'],
  ['K', 'u32'],
  ['lda', 'u32'],
  ['ldb', 'u32'],
  ['off_a', 'u32'],
  ['off_b', 'u32'],
  ['sa0', 'u32'],
  ['sa1', 'u32'],
  ['sb0', 'u32'],
  ['sb1', 'u32'],
  ['bd1', 'u32'],
  ['off_bias', 'u32'],
  ['has_bias', 'u32'],
  ['act', 'u32'],
  ['alpha', 'f32'],
  ['ta', 'u32'],
  ['tb', 'u32'],
  ['off_res', 'u32'],
  ['res_rs', 'u32'],
  ['has_res', 'u32'],
];

/** Element index of A[m][k] / B[k][n] from the batch base `base` (elements). */
function indexA(v: Variant, m: string, k: string): string {
  const n = `base_a + (${m}) * p.lda + (${k})`;
  const t = `base_a + (${k}) * p.lda + (${m})`;
  return v.layoutParam ? `select(${n}, ${t}, p.ta != 0u)` : v.la === 'n' ? n : t;
}
function indexB(v: Variant, k: string, n: string): string {
  const nn = `base_b + (${k}) * p.ldb + (${n})`;
  const t = `base_b + (${n}) * p.ldb + (${k})`;
  return v.layoutParam ? `select(${nn}, ${t}, p.tb != 0u)` : v.lb === 'n' ? nn : t;
}

function storage(v: Variant): KernelSpec['storage'] {
  const ty = (f16: boolean) => (v.vec ? `array<vec4<${f16 ? 'f16' : 'f32'}>>` : `array<${f16 ? 'f16' : 'f32'}>`);
  const s: KernelSpec['storage'] = [
    { name: 'A', access: 'read', type: ty(v.fa) },
    { name: 'B', access: 'read', type: ty(v.fb) },
    { name: 'Bias', access: 'read', type: 'array<f32>' },
    { name: 'Res', access: 'read', type: 'array<f32>' },
    { name: 'Out', access: 'read_write', type: v.vout ? 'array<vec4<f32>>' : 'array<f32>' },
  ];
  if (v.pre) s.push({ name: 'Pre', access: 'read_write', type: v.vout ? 'array<vec4<f32>>' : 'array<f32>' });
  if (v.rowSum) s.push({ name: 'RowSum', access: 'read_write', type: 'array<f32>' });
  return s;
}

/** WGSL shared by every family: batch bases, scalar loads, the epilogue. */
function common(v: Variant): string {
  const rd = (arr: string, idx: string) => (v.vec ? `f32(${arr}[(${idx}) >> 2u][(${idx}) & 3u])` : `f32(${arr}[${idx}])`);
  return `${ERF_WGSL}
fn batch_bases(z: u32) -> vec2<u32> {
  let z0 = z / p.bd1;
  let z1 = z - z0 * p.bd1;
  return vec2<u32>(p.off_a + z0 * p.sa0 + z1 * p.sa1, p.off_b + z0 * p.sb0 + z1 * p.sb1);
}
fn load_a(base_a: u32, m: u32, k: u32) -> f32 { return ${rd('A', indexA(v, 'm', 'k'))}; }
fn load_b(base_b: u32, k: u32, n: u32) -> f32 { return ${rd('B', indexB(v, 'k', 'n'))}; }${epilogue(v)}`;
}

/**
 * WGSL of the epilogue, `fn store(z, m, n, acc)`: output n of row m, or with vout outputs n..n+3
 * (n a multiple of 4, N too) from a vec4 `acc`.
 */
function epilogue(v: Variant): string {
  const acts = ACTIVATIONS.map((a, i) => `case ${i + 1}u: { return ${UNARY[a]}; }`).join('\n    ');
  const lanes = v.vout ? [0, 1, 2, 3] : [0];
  const each = (f: (t: number) => string) => (v.vout ? `vec4<f32>(${lanes.map(f).join(', ')})` : f(0));
  return `
fn activate(x: f32) -> f32 {
  switch p.act {
    ${acts}
    default: { return x; }
  }
}
fn store(z: u32, m: u32, n: u32, acc: ${v.vout ? 'vec4<f32>' : 'f32'}) {
  let row = z * p.M + m;
  let o = ${v.vout ? '(row * p.N + n) >> 2u' : 'row * p.N + n'};
  var x = acc * p.alpha;
  if (p.has_bias != 0u) { x += ${each((t) => `Bias[p.off_bias + n + ${t}u]`)}; }
  ${v.pre ? 'Pre[o] = x;' : ''}
  var y = x;
  if (p.act != 0u) { y = ${each((t) => `activate(x${v.vout ? `[${t}]` : ''})`)}; }
  if (p.has_res != 0u) {
    let r = p.off_res + row * p.res_rs + n;
    y += ${each((t) => `Res[r + ${t}u]`)};
  }
  Out[o] = y;
}`;
}

/**
 * 'rows': invocation i of workgroup (x, y, z) owns rows (y·WG + i)·TM .. +TM and columns
 * x·TN .. +TN. K runs in chunks of 4: A gives TM vec4 over k, B gives 4 × TN/4 vec4 over n (the
 * transposed layouts load vec4 along their contiguous dim and transpose in registers, which is
 * free: vec4 components are separate registers on every target). Rows and columns past the edge
 * are clamped for loading and skipped at the store, so the hot loop has no bounds checks.
 * With `sg` (the 'subgroup' family) the workgroup is one subgroup of that size, lanes are named
 * by subgroup_invocation_id, and B's chunk is loaded one vec4 per lane and shared by
 * subgroupBroadcast instead of every lane loading all of it.
 */
function rowsCode(v: Variant, t: Tiling, sg = 0): string {
  const { tm, tn } = t;
  const jn = tn / 4;
  const L: string[] = [];
  const rng = (n: number) => [...Array(n).keys()];
  const va = (arr: 'A' | 'B', idx: string) => ((arr === 'A' ? v.fa : v.fb) ? `vec4<f32>(${arr}[(${idx}) >> 2u])` : `${arr}[(${idx}) >> 2u]`);
  // Row / column indices, clamped into the matrix.
  for (const i of rng(tm)) L.push(`  let mi${i} = min(m0 + ${i}u, p.M - 1u);`);
  if (v.la === 't' && v.vec) for (const g of rng(tm / 4)) L.push(`  let mg${g} = min(m0 + ${4 * g}u, (p.M - 1u) & ~3u);`);
  if (v.lb === 'n' && v.vec) for (const j of rng(jn)) L.push(`  let ng${j} = min(n0 + ${4 * j}u, (p.N - 1u) & ~3u);`);
  else for (const j of rng(tn)) L.push(`  let nj${j} = min(n0 + ${j}u, p.N - 1u);`);
  for (const i of rng(tm)) for (const j of rng(jn)) L.push(`  var acc${i}_${j} = vec4<f32>(0.0);`);
  // With rowSum each lane also sums the A rows it loads anyway (four adds per row and chunk).
  if (v.rowSum) for (const i of rng(tm)) L.push(`  var rs${i} = 0.0;`);
  L.push(`  let k4 = p.K & ~3u;`, `  for (var k = 0u; k < k4; k += 4u) {`);
  // A chunk: a<i> = A[m_i][k..k+4].
  if (!v.vec) {
    for (const i of rng(tm)) L.push(`    let a${i} = vec4<f32>(${rng(4).map((q) => `load_a(base_a, mi${i}, k + ${q}u)`).join(', ')});`);
  } else if (v.la === 'n') {
    for (const i of rng(tm)) L.push(`    let a${i} = ${va('A', indexA(v, `mi${i}`, 'k'))};`);
  } else {
    for (const g of rng(tm / 4)) {
      for (const q of rng(4)) L.push(`    let at${g}_${q} = ${va('A', indexA(v, `mg${g}`, `k + ${q}u`))};`);
      for (const c of rng(4)) L.push(`    let a${4 * g + c} = vec4<f32>(${rng(4).map((q) => `at${g}_${q}[${c}]`).join(', ')});`);
    }
  }
  // B chunk: b<q>_<j> = B[k+q][n0+4j .. +4].
  if (!v.vec) {
    for (const q of rng(4)) {
      for (const j of rng(jn)) L.push(`    let b${q}_${j} = vec4<f32>(${rng(4).map((c) => `load_b(base_b, k + ${q}u, nj${4 * j + c})`).join(', ')});`);
    }
  } else if (sg && v.lb === 'n') {
    // Each lane loads one vec4 of the 4 × TN chunk (TN / SG rounds); its owner broadcasts it.
    const perRow = jn;
    const rowsPerRound = sg / perRow;
    L.push(`    let kr = k + lane / ${perRow}u;`, `    let ng = min(n0 + 4u * (lane % ${perRow}u), (p.N - 1u) & ~3u);`);
    for (const r of rng(tn / sg)) L.push(`    let bl${r} = ${va('B', indexB(v, `kr + ${r * rowsPerRound}u`, 'ng'))};`);
    for (const q of rng(4)) {
      for (const j of rng(jn)) L.push(`    let b${q}_${j} = subgroupBroadcast(bl${Math.floor(q / rowsPerRound)}, ${(q % rowsPerRound) * perRow + j}u);`);
    }
  } else if (sg) {
    // Lane l loads columns n0 + l + r·SG over the 4 k of the chunk; their owner broadcasts them.
    for (const r of rng(tn / sg)) L.push(`    let bl${r} = ${va('B', indexB(v, 'k', `min(n0 + lane + ${r * sg}u, p.N - 1u)`))};`);
    for (const c of rng(tn)) L.push(`    let bt${c} = subgroupBroadcast(bl${Math.floor(c / sg)}, ${c % sg}u);`);
    for (const q of rng(4)) {
      for (const j of rng(jn)) L.push(`    let b${q}_${j} = vec4<f32>(${rng(4).map((c) => `bt${4 * j + c}[${q}]`).join(', ')});`);
    }
  } else if (v.lb === 'n') {
    for (const q of rng(4)) for (const j of rng(jn)) L.push(`    let b${q}_${j} = ${va('B', indexB(v, `k + ${q}u`, `ng${j}`))};`);
  } else {
    for (const c of rng(tn)) L.push(`    let bt${c} = ${va('B', indexB(v, 'k', `nj${c}`))};`);
    for (const q of rng(4)) {
      for (const j of rng(jn)) L.push(`    let b${q}_${j} = vec4<f32>(${rng(4).map((c) => `bt${4 * j + c}[${q}]`).join(', ')});`);
    }
  }
  for (const i of rng(tm)) for (const j of rng(jn)) for (const q of rng(4)) L.push(`    acc${i}_${j} += a${i}[${q}] * b${q}_${j};`);
  if (v.rowSum) for (const i of rng(tm)) L.push(`    rs${i} += (a${i}.x + a${i}.y) + (a${i}.z + a${i}.w);`);
  L.push(`  }`);
  // The last K % 4 steps, one k at a time.
  L.push(`  for (var k = k4; k < p.K; k++) {`);
  for (const j of rng(jn)) {
    const cols = rng(4).map((c) => (v.lb === 'n' && v.vec ? `min(ng${j} + ${c}u, p.N - 1u)` : `nj${4 * j + c}`));
    L.push(`    let b_${j} = vec4<f32>(${cols.map((n) => `load_b(base_b, k, ${n})`).join(', ')});`);
  }
  for (const i of rng(tm)) {
    L.push(`    let a${i} = load_a(base_a, mi${i}, k);`);
    for (const j of rng(jn)) L.push(`    acc${i}_${j} += a${i} * b_${j};`);
    if (v.rowSum) L.push(`    rs${i} += a${i};`);
  }
  L.push(`  }`);
  // The row sums, from the workgroups of the first column block only (the others repeat them).
  if (v.rowSum) {
    L.push(`  if (wid.x == 0u) {`);
    L.push(`    let rsa = array<f32, ${tm}>(${rng(tm).map((i) => `rs${i}`).join(', ')});`);
    L.push(`    for (var i = 0u; i < ${tm}u && m0 + i < p.M; i++) { RowSum[z * p.M + m0 + i] = rsa[i]; }`);
    L.push(`  }`);
  }
  // One store site in a loop: the epilogue (with every activation) is emitted once, not per output.
  L.push(`  let res = array<vec4<f32>, ${tm * jn}>(${rng(tm).flatMap((i) => rng(jn).map((j) => `acc${i}_${j}`)).join(', ')});`);
  L.push(`  for (var i = 0u; i < ${tm}u && m0 + i < p.M; i++) {`);
  if (v.vout) L.push(`    for (var j = 0u; j < ${jn}u && n0 + 4u * j < p.N; j++) { store(z, m0 + i, n0 + 4u * j, res[i * ${jn}u + j]); }`);
  else L.push(`    for (var j = 0u; j < ${tn}u && n0 + j < p.N; j++) { store(z, m0 + i, n0 + j, res[i * ${jn}u + j / 4u][j % 4u]); }`);
  L.push(`  }`);
  return `${common(v)}
@compute @workgroup_size(WG_X)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>${sg ? ', @builtin(subgroup_invocation_id) lane: u32' : ''}) {
  let z = wid.z;
  let bases = batch_bases(z);
  let base_a = bases.x;
  let base_b = bases.y;
  let n0 = wid.x * ${tn}u;
  let m0 = (wid.y * WG_X + ${sg ? 'lane' : 'lid.x'}) * ${tm}u;
${L.join('\n')}
}`;
}

/**
 * 'tiled': a WG_Y·TM × WG_X·TN output tile per workgroup; A and B pass through workgroup memory
 * BK deep, loaded with bounds checks so that any shape and layout works. Invocation (x, y) owns
 * rows y + WG_Y·i and columns x + WG_X·j: neighbouring invocations read neighbouring words of
 * the B tile and write neighbouring outputs.
 */
function tiledCode(v: Variant, t: WorkgroupTiling): string {
  const { wgX, wgY, tm, tn, bk } = t;
  const bm = wgY * tm;
  const bn = wgX * tn;
  const threads = wgX * wgY;
  const rng = (n: number) => [...Array(n).keys()];
  // Tile-local coordinates of loaded element e: the contiguous dim of each layout varies fastest.
  const aCoord = ['select(e / BK, e % BM, p.ta != 0u)', 'select(e % BK, e / BM, p.ta != 0u)'];
  const bCoord = ['select(e / BN, e % BK, p.tb != 0u)', 'select(e % BN, e / BK, p.tb != 0u)'];
  const L: string[] = [];
  for (const i of rng(tm)) for (const j of rng(tn)) L.push(`  var c${i}_${j} = 0.0;`);
  if (v.rowSum) for (const i of rng(tm)) L.push(`  var rs${i} = 0.0;`);
  L.push(`  for (var k0 = 0u; k0 < p.K; k0 += BK) {`);
  L.push(`    for (var e = li; e < BM * BK; e += ${threads}u) {`);
  L.push(`      let mm = ${aCoord[0]}; let kk = ${aCoord[1]};`);
  L.push(`      let m = m0 + mm; let k = k0 + kk;`);
  L.push(`      ta[kk * BM + mm] = select(0.0, load_a(base_a, min(m, p.M - 1u), min(k, p.K - 1u)), m < p.M && k < p.K);`);
  L.push(`    }`);
  L.push(`    for (var e = li; e < BK * BN; e += ${threads}u) {`);
  L.push(`      let kk = ${bCoord[0]}; let nn = ${bCoord[1]};`);
  L.push(`      let k = k0 + kk; let n = n0 + nn;`);
  L.push(`      tb[kk * BN + nn] = select(0.0, load_b(base_b, min(k, p.K - 1u), min(n, p.N - 1u)), n < p.N && k < p.K);`);
  L.push(`    }`);
  L.push(`    workgroupBarrier();`);
  L.push(`    for (var kk = 0u; kk < BK; kk++) {`);
  for (const i of rng(tm)) L.push(`      let a${i} = ta[kk * BM + lid.y + ${i * wgY}u];`);
  for (const j of rng(tn)) L.push(`      let b${j} = tb[kk * BN + lid.x + ${j * wgX}u];`);
  for (const i of rng(tm)) for (const j of rng(tn)) L.push(`      c${i}_${j} += a${i} * b${j};`);
  // The tile is zero past K, so every invocation's row sums are whole; column 0 writes them.
  if (v.rowSum) for (const i of rng(tm)) L.push(`      rs${i} += a${i};`);
  L.push(`    }`, `    workgroupBarrier();`, `  }`);
  if (v.rowSum) {
    L.push(`  if (wid.x == 0u && lid.x == 0u) {`);
    for (const i of rng(tm)) L.push(`    if (m0 + lid.y + ${i * wgY}u < p.M) { RowSum[z * p.M + m0 + lid.y + ${i * wgY}u] = rs${i}; }`);
    L.push(`  }`);
  }
  L.push(`  let res = array<f32, ${tm * tn}>(${rng(tm).flatMap((i) => rng(tn).map((j) => `c${i}_${j}`)).join(', ')});`);
  L.push(`  for (var i = 0u; i < ${tm}u; i++) {`);
  L.push(`    for (var j = 0u; j < ${tn}u; j++) {`);
  L.push(`      let m = m0 + lid.y + i * WG_Y; let n = n0 + lid.x + j * WG_X;`);
  L.push(`      if (m < p.M && n < p.N) { store(z, m, n, res[i * ${tn}u + j]); }`);
  L.push(`    }`, `  }`);
  return `${common(v)}
const BM = ${bm}u;
const BN = ${bn}u;
const BK = ${bk}u;
var<workgroup> ta: array<f32, ${bm * bk}>;
var<workgroup> tb: array<f32, ${bk * bn}>;
@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let z = wid.z;
  let bases = batch_bases(z);
  let base_a = bases.x;
  let base_b = bases.y;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
${L.join('\n')}
}`;
}

function variantKey(v: Variant): string {
  return [v.kernel + (v.sg ? `${v.sg}` : ''), v.layoutParam ? 'any' : v.la + v.lb, v.vec ? 'vec4' : 'scalar', v.fa ? 'f16' : 'f32', v.fb ? 'f16' : 'f32', v.pre ? 'pre' : '', v.vout ? 'vout' : '', v.rowSum ? 'rowsum' : ''].filter(Boolean).join('-');
}

const specs = new Map<string, KernelSpec>();

export function matmulSpec(v: Variant): KernelSpec {
  const key = variantKey(v);
  let s = specs.get(key);
  if (!s) {
    s = {
      name: 'matmul',
      variant: key,
      storage: storage(v),
      params: PARAMS,
      workgroupSize: v.tiling ? [v.tiling.wg] : [TILED_TILINGS[v.kernel as TiledKernel].wgX, TILED_TILINGS[v.kernel as TiledKernel].wgY],
      enable: [...(v.fa || v.fb ? ['f16' as const] : []), ...(v.sg ? ['subgroups' as const] : [])],
      code: v.tiling ? rowsCode(v, v.tiling, v.sg) : tiledCode(v, TILED_TILINGS[v.kernel as TiledKernel]),
    };
    specs.set(key, s);
  }
  return s;
}
