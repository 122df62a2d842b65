// Batched matrix multiply out = act(alpha · op(A)·op(B) + bias) + residual with the epilogue fused.
//
// Every operand is addressed in place: each logical matrix is either row-major ('n', the column
// index contiguous) or column-major ('t', a transposed view or an operand asked for transposed),
// with any leading dimension and up to two broadcast batch dims. Only views with no unit stride
// in the matrix dims are copied first.
//
// Kernel families (kept side by side, each correct on any adapter):
// - 'subgroup': for CPU adapters (lavapipe) with a fixed subgroup size. One subgroup per
//   workgroup, each lane a 4-row × 2·SG-column block straight from storage; the lanes load B's
//   chunk cooperatively (a vec4 each) and broadcast it to each other. Needs vec4-aligned operands
//   and falls back to 'rows' otherwise.
// - 'rows': for CPU adapters without subgroups. Register blocking straight from storage, no
//   workgroup memory; all invocations of a workgroup share the same output columns.
// - 'tiled': for GPUs. Workgroup-memory tiles of A and B, each invocation a 4×4 block.
import { type KernelSpec } from '../kernel.js';
import type { Device } from '../runtime.js';
import { type Shape, type Tensor, empty, shapeStr } from '../tensor.js';
import { ERF_WGSL, UNARY, launchCopy } from './elementwise.js';
import { broadcastShapes, coalesce } from './layout.js';
import { fixedSubgroupSize, isCpuAdapter } from './adapter.js';

export type MatmulActivation = 'gelu' | 'quick_gelu' | 'relu';
/** Per-invocation register block and workgroup shape of each family. */
interface Tiling {
  wg: number;
  /** Output rows per invocation. */
  tm: number;
  /** Output columns per invocation (multiple of 4). */
  tn: number;
}

// GFLOP/s at 1024³ on lavapipe (2 cores, AVX2), f32, A·Bᵀ / A·B, as flops per 2 cores of process
// CPU time (other jobs shared the cores; the FMA ceiling measured the same way was 65-75; the
// kernels bench notes the same figure as "by CPU time"):
//   subgroup  4×16 per lane ............ 36 / 34   <- default on CPU adapters with fixed subgroups
//   subgroup  2×32, 2×16 ............... 26 / 34, 27 / 29
//   subgroup  8×8, 4×8, 1×32, 4×32 ..... 22 / 23, 22 / 19, - / 22, - / 22
//   rows      4×8, workgroup 64 ........ 13.5      <- CPU adapters without subgroups
//   rows      4×16, workgroup 8 ........ 8.6       (64 accumulators: spills; as the first quick kernel)
//   rows      8×8, 2×8, 2×4, 1×12, 1×8 . 5.7, 4.2, 9.6, 6.3, 4.1
//   tiled     64×64 tile, 4×4 .......... 3.8 / 2.7 (workgroup memory buys nothing on a CPU)
// On an NVIDIA H200 through Vulkan (subgroup size 32, so 'subgroup' runs as 'rows'), f32 TFLOP/s
// at 1024³ / 2048³ / 4096³ / 785×768×2304 Bᵀ / 12560×3072×768 Bᵀ, one-off run of a timing loop:
//   tiled     64×64 tile, 4×4 .......... 10.2 / 14.5 / 15.7 / 10.1 / 13.2   <- default on GPUs
//   tiled     128×128 tile, 8×8, BK 8 .. 5.5 / 14.5 / 15.7 / 9.1 / 12.6    (no better: dropped)
//   rows      4×8, workgroup 64 ........ 8.7 / 9.7 / 7.4 / 8.9 / 7.1
// Every scalar of an invocation is a full 8-lane register on lavapipe, so a register block of
// 16+ outputs spills; what pays is loading memory with few instructions: a load whose address
// differs per lane is one gather for 8 values, a uniform one is a scalar load per value. The
// subgroup kernels get B by gathers and hand it to every lane with subgroupBroadcast.

/** Register-blocked families straight from storage, by tiling. */
const ROWS_TILINGS = {
  rows: { wg: 64, tm: 4, tn: 8 },
} satisfies Record<string, Tiling>;
type RowsKernel = keyof typeof ROWS_TILINGS;
/** Subgroup families: output rows per lane, and columns per workgroup in units of the subgroup size. */
const SUBGROUP_TILES = { subgroup: [4, 2] } as const;
type SubgroupKernel = keyof typeof SUBGROUP_TILES;
export type MatmulKernel = RowsKernel | SubgroupKernel | TiledKernel;
export const MATMUL_KERNELS: readonly MatmulKernel[] = ['subgroup', 'rows', 'tiled'];


export interface MatmulOptions {
  /** Use Aᵀ (the last two dims swapped) as the left operand. */
  transA?: boolean;
  /** Use Bᵀ as the right operand. */
  transB?: boolean;
  /** f32 vector of length N added to every output row. */
  bias?: Tensor;
  activation?: MatmulActivation;
  /** Scales op(A)·op(B) before the bias. */
  alpha?: number;
  /**
   * Added to the output after the activation (a residual stream: x + proj(·)), of the output's
   * shape; read in place when its rows run at one stride (a contiguous tensor, or a slice of one
   * row per batch entry), else copied first.
   */
  residual?: Tensor;
  /** Kernel family; default: the best one for this adapter (see defaultKernel). */
  kernel?: MatmulKernel;
}

type Layout = 'n' | 't';

/** One operand as the kernel reads it. */
interface Operand {
  t: Tensor;
  layout: Layout;
  /** Distance between consecutive rows ('n') or columns ('t'), in elements. */
  ld: number;
  rows: number;
  cols: number;
}

interface WorkgroupTiling {
  wgX: number;
  wgY: number;
  tm: number;
  tn: number;
  bk: number;
}
/** Workgroup-memory families, by tiling. */
const TILED_TILINGS = {
  tiled: { wgX: 16, wgY: 16, tm: 4, tn: 4, bk: 16 },
} satisfies Record<string, WorkgroupTiling>;
type TiledKernel = keyof typeof TILED_TILINGS;


/** The kernel family used when none is asked for: see the table above. */
export function defaultKernel(dev: Device): MatmulKernel {
  if (!isCpuAdapter(dev)) return 'tiled';
  return fixedSubgroupSize(dev) ? 'subgroup' : 'rows';
}

// ---- WGSL generation ----

interface Variant {
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
  /** A / B stored as f16 (accumulation is f32 either way). */
  fa: boolean;
  fb: boolean;
  pre: boolean;
}

// The epilogue is chosen by uniform parameters, not by variant: it runs once per output, and every
// variant costs a driver compile (seconds on lavapipe for the unrolled 'rows' kernels).
const ACTIVATIONS: MatmulActivation[] = ['gelu', 'quick_gelu', 'relu'];

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
    { name: 'Out', access: 'read_write', type: 'array<f32>' },
  ];
  if (v.pre) s.push({ name: 'Pre', access: 'read_write', type: 'array<f32>' });
  return s;
}

/** WGSL shared by every family: batch bases, scalar loads, the epilogue. */
function common(v: Variant): string {
  const rd = (arr: string, idx: string) => (v.vec ? `f32(${arr}[(${idx}) >> 2u][(${idx}) & 3u])` : `f32(${arr}[${idx}])`);
  const acts = ACTIVATIONS.map((a, i) => `case ${i + 1}u: { y = ${UNARY[a]}; }`).join('\n    ');
  return `${ERF_WGSL}
fn batch_bases(z: u32) -> vec2<u32> {
  let z0 = z / p.bd1;
  let z1 = z - z0 * p.bd1;
  return vec2<u32>(p.off_a + z0 * p.sa0 + z1 * p.sa1, p.off_b + z0 * p.sb0 + z1 * p.sb1);
}
fn load_a(base_a: u32, m: u32, k: u32) -> f32 { return ${rd('A', indexA(v, 'm', 'k'))}; }
fn load_b(base_b: u32, k: u32, n: u32) -> f32 { return ${rd('B', indexB(v, 'k', 'n'))}; }
fn store(z: u32, m: u32, n: u32, acc: f32) {
  let row = z * p.M + m;
  let o = row * p.N + n;
  var x = acc * p.alpha;
  if (p.has_bias != 0u) { x += Bias[p.off_bias + n]; }
  ${v.pre ? 'Pre[o] = x;' : ''}
  var y = x;
  switch p.act {
    ${acts}
    default: {}
  }
  if (p.has_res != 0u) { y += Res[p.off_res + row * p.res_rs + n]; }
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
  }
  L.push(`  }`);
  // One store site in a loop: the epilogue (with every activation) is emitted once, not per output.
  L.push(`  let res = array<vec4<f32>, ${tm * jn}>(${rng(tm).flatMap((i) => rng(jn).map((j) => `acc${i}_${j}`)).join(', ')});`);
  L.push(`  for (var i = 0u; i < ${tm}u && m0 + i < p.M; i++) {`);
  L.push(`    for (var j = 0u; j < ${tn}u && n0 + j < p.N; j++) { store(z, m0 + i, n0 + j, res[i * ${jn}u + j / 4u][j % 4u]); }`);
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
  L.push(`    }`, `    workgroupBarrier();`, `  }`);
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
  return [v.kernel + (v.sg ? `${v.sg}` : ''), v.layoutParam ? 'any' : v.la + v.lb, v.vec ? 'vec4' : 'scalar', v.fa ? 'f16' : 'f32', v.fb ? 'f16' : 'f32', v.pre ? 'pre' : ''].filter(Boolean).join('-');
}

const specs = new Map<string, KernelSpec>();

function matmulSpec(v: Variant): KernelSpec {
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

// ---- operands ----

/** How the kernel reads `x` as the logical matrix op(x) (rows × cols), or null if it cannot in place. */
function operandOf(x: Tensor, trans: boolean): Operand | null {
  const r = x.rank;
  const [pr, pc] = [x.shape[r - 2]!, x.shape[r - 1]!];
  const [rows, cols] = trans ? [pc, pr] : [pr, pc];
  const sr = trans ? x.strides[r - 1]! : x.strides[r - 2]!;
  const sc = trans ? x.strides[r - 2]! : x.strides[r - 1]!;
  // The stride of a size-1 dim is never used: there pick an ld that keeps vec4 alignment.
  if ((cols === 1 || sc === 1) && (rows === 1 || sr >= cols)) {
    return { t: x, layout: 'n', ld: rows === 1 ? Math.ceil(cols / 4) * 4 : sr, rows, cols };
  }
  if ((rows === 1 || sr === 1) && (cols === 1 || sc >= rows)) {
    return { t: x, layout: 't', ld: cols === 1 ? Math.ceil(rows / 4) * 4 : sc, rows, cols };
  }
  return null;
}

function checkOperands(a: Tensor, b: Tensor, opts: MatmulOptions): void {
  const what = () => `matmul: ${a.dtype}${shapeStr(a.shape)}${opts.transA ? 'ᵀ' : ''} · ${b.dtype}${shapeStr(b.shape)}${opts.transB ? 'ᵀ' : ''}`;
  if (a.rank < 2 || b.rank < 2) throw new Error(`${what()}: operands need at least 2 dims`);
  if (a.device !== b.device) throw new Error(`${what()}: operands live on different devices`);
  for (const t of [a, b]) if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new Error(`${what()}: operands must be f32 or f16`);
  if ((a.dtype === 'f16' || b.dtype === 'f16') && !a.device.has('shader-f16')) {
    throw new Error(`${what()}: f16 operands need the 'shader-f16' feature, which this adapter lacks`);
  }
  const k1 = opts.transA ? a.shape[a.rank - 2]! : a.shape[a.rank - 1]!;
  const k2 = opts.transB ? b.shape[b.rank - 1]! : b.shape[b.rank - 2]!;
  if (k1 !== k2) throw new Error(`${what()}: inner dims ${k1} and ${k2} differ`);
  if (opts.bias) {
    const n = opts.transB ? b.shape[b.rank - 2]! : b.shape[b.rank - 1]!;
    if (opts.bias.dtype !== 'f32' || opts.bias.size !== n || !opts.bias.isContiguous()) {
      throw new Error(`${what()}: bias must be a contiguous f32 tensor of ${n} elements, got ${opts.bias.dtype}${shapeStr(opts.bias.shape)}`);
    }
  }
}

/**
 * The stride between consecutive output rows in `residual` (of the output's shape), when its rows
 * run at one stride with unit column stride; undefined when it must be copied first.
 */
function residualRowStride(residual: Tensor): number | undefined {
  const r = residual.rank;
  if (residual.strides[r - 1] !== 1 && residual.shape[r - 1] !== 1) return undefined;
  const rows = coalesce('matmul', residual.shape.slice(0, -1), [residual.strides.slice(0, -1)]);
  const live = [...rows.dims.keys()].filter((i) => rows.dims[i] !== 1);
  if (live.length === 0) return residual.shape[r - 1]!;
  return live.length === 1 ? rows.strides[0]![live[0]!] : undefined;
}

interface Launch {
  out: Tensor;
  /** The pre-activation, when asked for. */
  pre: Tensor | null;
}

/** Strides of the batch dims of `x` as broadcast to `batch` (0 where broadcast). */
function batchStrides(x: Tensor, batch: number[]): number[] {
  const lead = batch.length - (x.rank - 2);
  return batch.map((d, i) => (i < lead || x.shape[i - lead] === 1 ? 0 : x.strides[i - lead]!));
}

/** The batch broadcast of A and B as two levels (outer, inner) of (dim, strideA, strideB), or null. */
function batchLevels(a: Tensor, b: Tensor, batch: number[]): { d: number[]; sa: number[]; sb: number[] } | null {
  const l = coalesce('matmul', batch, [batchStrides(a, batch), batchStrides(b, batch)]);
  const live = [...l.dims.keys()].filter((i) => l.dims[i] !== 1);
  if (live.length > 2) return null;
  while (live.length < 2) live.unshift(-1);
  return {
    d: live.map((i) => (i < 0 ? 1 : l.dims[i]!)),
    sa: live.map((i) => (i < 0 ? 0 : l.strides[0]![i]!)),
    sb: live.map((i) => (i < 0 ? 0 : l.strides[1]![i]!)),
  };
}

function launch(a: Tensor, b: Tensor, opts: MatmulOptions, savePre: boolean): Launch {
  checkOperands(a, b, opts);
  const dev = a.device;
  const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const temps: Tensor[] = [];
  let oa = operandOf(a, Boolean(opts.transA));
  if (!oa) {
    const c = launchCopy(a);
    temps.push(c);
    oa = operandOf(c, Boolean(opts.transA))!;
  }
  let ob = operandOf(b, Boolean(opts.transB));
  if (!ob) {
    const c = launchCopy(b);
    temps.push(c);
    ob = operandOf(c, Boolean(opts.transB))!;
  }
  let levels = batchLevels(oa.t, ob.t, batch);
  if (!levels) {
    // More than two batch levels survive coalescing: materialise both at the broadcast shape.
    const ea = launchCopy(oa.t, [...batch, ...oa.t.shape.slice(-2)]);
    const eb = launchCopy(ob.t, [...batch, ...ob.t.shape.slice(-2)]);
    temps.push(ea, eb);
    oa = operandOf(ea, Boolean(opts.transA))!;
    ob = operandOf(eb, Boolean(opts.transB))!;
    levels = batchLevels(ea, eb, batch)!;
  }
  let M = oa.rows;
  const K = oa.cols;
  const N = ob.cols;
  const outShape: Shape = [...batch, M, N];
  const { d, sa, sb } = levels;
  if (sb[0] === 0 && sb[1] === 0 && oa.layout === 'n' && (d[1] === 1 || sa[1] === M * oa.ld) && (d[0] === 1 || sa[0] === d[1]! * M * oa.ld)) {
    // B is shared by the whole batch and A's rows run on across it: one taller matrix.
    M *= d[0]! * d[1]!;
    levels = { d: [1, 1], sa: [0, 0], sb: [0, 0] };
  }
  const out = empty(dev, outShape, 'f32', 'matmul');
  const pre = savePre ? empty(dev, outShape, 'f32', 'matmul_pre') : null;
  let res = opts.residual;
  if (res) {
    if (res.dtype !== 'f32' || res.shape.join() !== outShape.join()) {
      throw new Error(`matmul: residual ${res.dtype}${shapeStr(res.shape)} must be f32 of the output's shape ${shapeStr(outShape)}`);
    }
    if (residualRowStride(res) === undefined) {
      res = launchCopy(res);
      temps.push(res);
    }
  }
  const nBatch = levels.d[0]! * levels.d[1]!;
  if (out.size > 0) {
    const aligned = [oa.t.offset, ob.t.offset, oa.ld, ob.ld, ...levels.sa, ...levels.sb].every((x) => x % 4 === 0);
    let kernel = opts.kernel ?? defaultKernel(dev);
    const sg = kernel in SUBGROUP_TILES && aligned ? fixedSubgroupSize(dev) : 0;
    // Subgroup kernels read B with vec4 loads only; elsewhere their rows sibling does the work.
    if (kernel in SUBGROUP_TILES && !sg) kernel = 'rows';
    const st = SUBGROUP_TILES[kernel as SubgroupKernel];
    const tiling: Tiling | null = sg ? { wg: sg, tm: st[0], tn: st[1] * sg } : kernel in TILED_TILINGS ? null : ROWS_TILINGS[kernel as RowsKernel];
    const v: Variant = {
      kernel,
      tiling,
      sg,
      la: oa.layout,
      lb: ob.layout,
      layoutParam: tiling === null,
      vec: tiling !== null && aligned,
      fa: oa.t.dtype === 'f16',
      fb: ob.t.dtype === 'f16',
      pre: savePre,
    };
    const wt = TILED_TILINGS[kernel as TiledKernel];
    const groups: [number, number, number] = tiling
      ? [Math.ceil(N / tiling.tn), Math.ceil(M / (tiling.wg * tiling.tm)), nBatch]
      : [Math.ceil(N / (wt.wgX * wt.tn)), Math.ceil(M / (wt.wgY * wt.tm)), nBatch];
    const params = [
      M,
      N,
      K,
      oa.ld,
      ob.ld,
      oa.t.offset,
      ob.t.offset,
      levels.sa[0]!,
      levels.sa[1]!,
      levels.sb[0]!,
      levels.sb[1]!,
      levels.d[1]!,
      opts.bias?.offset ?? 0,
      opts.bias ? 1 : 0,
      opts.activation ? ACTIVATIONS.indexOf(opts.activation) + 1 : 0,
      opts.alpha ?? 1,
      oa.layout === 't' ? 1 : 0,
      ob.layout === 't' ? 1 : 0,
      res?.offset ?? 0,
      res ? residualRowStride(res)! : 0,
      res ? 1 : 0,
    ];
    const buffers = [oa.t.buffer, ob.t.buffer, opts.bias?.buffer ?? oa.t.buffer, res?.buffer ?? oa.t.buffer, out.buffer];
    if (pre) buffers.push(pre.buffer);
    dev.dispatch(matmulSpec(v), buffers, params, groups);
  }
  for (const t of temps) t.dispose();
  return { out, pre };
}

/**
 * act(alpha · op(A)·op(B) + bias) as a new contiguous f32 tensor of shape (...batch, M, N).
 * A is (...batchA, M, K) (or (..., K, M) with transA), B is (...batchB, K, N) (or (..., N, K)
 * with transB); batch dims broadcast. Each operand f32 or f16 (f16 needs 'shader-f16'); the
 * accumulation and the output are f32.
 */
export function launchMatmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return launch(a, b, opts, false).out;
}

/** launchMatmul that also returns the pre-activation alpha · op(A)·op(B) + bias, for backward. */
export function launchMatmulWithPre(a: Tensor, b: Tensor, opts: MatmulOptions): { out: Tensor; pre: Tensor } {
  const r = launch(a, b, opts, true);
  return { out: r.out, pre: r.pre! };
}
