// Batched matrix multiplication on tensor cores: the same products as kernels/matmul.ts (same
// layouts, batch and reduced dims, split, bias and activation epilogue), computed with wgpu's
// cooperative-matrix extension (`enable wgpu_cooperative_matrix;`, VK_KHR_cooperative_matrix on
// Vulkan). Operands stay f32 in global memory; each bk-deep slab is rounded to f16 on its way into
// shared memory (saturating at ±65504 rather than overflowing to infinity), and 16×16×16
// fragment products accumulate in f32. f16 keeps the 10-bit mantissa of the TF32 that PyTorch
// uses by default for convolutions, but only a 5-bit exponent: values under 6·10⁻⁵ lose bits and
// under 6·10⁻⁸ vanish, which is why the engine uses this route only where its precision mode
// allows (engine/precision.ts) — not for gradients, whose magnitudes sit far below that.
//
// One workgroup computes a bm×bn tile of C with wm×wn subgroups (32 lanes each, NVIDIA's
// subgroup size: the tile assumes it), each owning a (bm/wm)×(bn/wn) block of 16×16 f32
// accumulators. A slab is stored in shared memory in the operand's own memory order (no
// transposing stores): rows along its contiguous dim, padded by 8 halves against bank conflicts,
// and the fragment load reads it row-major or column-major to match. The write-out goes through a
// 16×16 scratch per subgroup, so the epilogue and the bounds checks are per element.
//
// Layout of naga's loads (checked on an H100 by bench/gpu_coop_probe.ts): coopLoadT reads a
// row-major array (element (r, c) at r·stride + c), coopLoad a column-major one; likewise for
// coopStoreT and coopStore.

import { cached, type Kernel, kernel, prod, ro, rw } from "./common.ts";
import { activationExpr, type BatchDim, type MatmulActivation, MAX_DIM_GROUPS } from "./matmul.ts";
import { offsetExpr } from "./matmul_operand.ts";
import { activeProfile } from "./device_profile.ts";

export interface CoopTile {
  /** Tile of C per workgroup and reduction depth per slab (multiples of 16). */
  bm: number;
  bn: number;
  bk: number;
  /** Subgroups along M and N; bm/wm and bn/wn are multiples of 16. */
  wm: number;
  wn: number;
}

export interface CoopMatmulSpec {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  batch: BatchDim[];
  reduce?: BatchDim[];
  split?: number;
  bias?: boolean;
  biasRows?: boolean;
  activation?: MatmulActivation;
  tile: CoopTile;
}

/** The default tile: 128×128, 4 subgroups each holding 4×4 fragments, 32-deep slabs. */
export const COOP_TILE: CoopTile = { bm: 128, bn: 128, bk: 32, wm: 2, wn: 2 };

const SUBGROUP = 32;
const PAD = 8;
const ROW_LOAD = "coopLoadT";
const COL_LOAD = "coopLoad";
const ROW_STORE = "coopStoreT";

/** The adapter feature that exposes cooperative matrices (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX). */
export const COOP_FEATURE = "wgpu-cooperative-matrix";

/** The extension and f16 directives a coop kernel's module starts with. */
export const COOP_ENABLES = "enable f16;\nenable wgpu_cooperative_matrix;\n";

export function checkCoopTile(t: CoopTile): void {
  const threads = t.wm * t.wn * SUBGROUP;
  const ok = t.bk % 16 === 0 && t.bk > 0 && (t.bm / t.wm) % 16 === 0 &&
    (t.bn / t.wn) % 16 === 0 && t.bm % t.wm === 0 && t.bn % t.wn === 0 && threads <= 256;
  if (!ok) throw new Error(`matmul_coop: bad tile ${JSON.stringify(t)}`);
}

/** One operand's slab: outer extent (M or N) and its tile, whether K is its contiguous dim. */
interface Side {
  name: "a" | "b";
  outer: number;
  tileOuter: number;
  kContig: boolean;
  vec: boolean;
}

/** Shared-memory geometry of one operand's slab: rows × pitch halves, in memory order. */
function slabShape(s: Side, bk: number) {
  const rows = s.kContig ? s.tileOuter : bk;
  const cols = s.kContig ? bk : s.tileOuter;
  return { rows, cols, pitch: cols + PAD };
}

/** Loads of one slab into registers (`<name>_r<p>`) and their f16 stores into shared memory. */
function sideCode(s: Side, spec: CoopMatmulSpec, threads: number) {
  const { bk } = spec.tile;
  const { rows, cols, pitch } = slabShape(s, bk);
  const unit = s.vec ? 4 : 1;
  const perRow = cols / unit;
  const items = rows * perRow;
  const per = Math.ceil(items / threads);
  const ld = s.kContig ? spec.k : s.outer; // leading dimension in elements
  const type = s.vec ? "vec4<f32>" : "f32";
  const zero = s.vec ? "vec4<f32>(0.0)" : "0.0";
  const sat = s.vec ? "vec4<f32>(65504.0)" : "65504.0";
  const setup: string[] = [], load: string[] = [], store: string[] = [];
  const nm = s.name;
  for (let p = 0; p < per; p++) {
    const q = `(lid + ${p * threads}u)`;
    const partial = items % threads !== 0 && p === per - 1;
    setup.push(`var ${nm}_r${p}: ${type};`);
    setup.push(`let ${nm}_row${p} = ${q} / ${perRow}u;`);
    setup.push(`let ${nm}_col${p} = (${q} % ${perRow}u) * ${unit}u;`);
    // Slab row/col → (outer, k) in the operand.
    const [o, kk] = s.kContig
      ? [`${nm}_o0 + ${nm}_row${p}`, `${nm}_col${p}`]
      : [`${nm}_o0 + ${nm}_col${p}`, `${nm}_row${p}`];
    const inK = `k0 + ${kk} < ${spec.k}u`;
    const inOuter = `${o} < ${s.outer}u`;
    const conds = [inK, inOuter];
    if (partial) conds.unshift(`${q} < ${items}u`);
    const addr = s.kContig ? `(${o}) * ${ld}u + k0 + ${kk}` : `(k0 + ${kk}) * ${ld}u + ${o}`;
    load.push(
      `if (${conds.join(" && ")}) { ${nm}_r${p} = ${nm}_in[(${nm}_base + ${addr}) / ${unit}u]; } ` +
        `else { ${nm}_r${p} = ${zero}; }`,
    );
    const d = `${nm}_row${p} * ${pitch}u + ${nm}_col${p}`;
    const v = `clamp(${nm}_r${p}, -${sat}, ${sat})`;
    const body = s.vec
      ? `let h = vec4<f16>(${v}); let d = ${d}; ${nm}_sh[d] = h.x; ${nm}_sh[d + 1u] = h.y; ` +
        `${nm}_sh[d + 2u] = h.z; ${nm}_sh[d + 3u] = h.w;`
      : `${nm}_sh[${d}] = f16(${v});`;
    store.push(partial ? `if (${q} < ${items}u) { ${body} }` : `{ ${body} }`);
  }
  return { setup, load, store, decl: `array<f16, ${rows * pitch}>`, pitch };
}

/** The coop matmul kernel for one spec. Bindings: a, b, [bias], c (as kernels/matmul.ts). */
function matmulCoopKernelGen(spec: CoopMatmulSpec): Kernel {
  const t = spec.tile;
  checkCoopTile(t);
  const { m: M, n: N, k: K, transA, transB } = spec;
  const reduce = spec.reduce ?? [];
  const split = spec.split ?? 1;
  if (split > 1 && (spec.bias || spec.activation)) {
    throw new Error("matmul_coop: bias and activation go into splitSumKernel when split > 1");
  }
  const threads = t.wm * t.wn * SUBGROUP;
  const TM = t.bm / t.wm, TN = t.bn / t.wn, FM = TM / 16, FN = TN / 16;
  const tilesN = Math.ceil(N / t.bn), tilesM = Math.ceil(M / t.bm), tilesK = Math.ceil(K / t.bk);
  const R = prod(reduce.map((d) => d.size));
  const total = R * tilesK;
  const per = Math.ceil(total / split);
  if (split > 1 && (split - 1) * per >= total) {
    throw new Error(`matmul_coop: split ${split} of ${total} slabs leaves a part empty`);
  }
  const batchCount = prod(spec.batch.map((d) => d.size));
  const Z = batchCount * split;
  if (Z > MAX_DIM_GROUPS || tilesN > MAX_DIM_GROUPS || tilesM > MAX_DIM_GROUPS) {
    throw new Error(`matmul_coop: ${Z}×${M}×${N} too large for one launch`);
  }
  const dims = [...spec.batch, ...reduce];
  const vec4ok = (contig: number, key: "a" | "b") =>
    contig % 4 === 0 && dims.every((d) => d[key] % 4 === 0);
  const A: Side = {
    name: "a",
    outer: M,
    tileOuter: t.bm,
    kContig: !transA,
    vec: vec4ok(transA ? M : K, "a"),
  };
  const B: Side = {
    name: "b",
    outer: N,
    tileOuter: t.bn,
    kContig: transB,
    vec: vec4ok(transB ? K : N, "b"),
  };
  const ca = sideCode(A, spec, threads), cb = sideCode(B, spec, threads);
  const bd = (key: "a" | "b", ds: BatchDim[]) => ds.map((d) => ({ size: d.size, stride: d[key] }));

  // Fragment reads of one 16-deep step kk of the slab in shared memory.
  const mma: string[] = [];
  for (let kk = 0; kk < t.bk / 16; kk++) {
    const step: string[] = [];
    for (let j = 0; j < FN; j++) {
      const col = `wx * ${TN}u + ${j * 16}u`;
      const at = B.kContig
        ? `(${col}) * ${cb.pitch}u + ${kk * 16}u`
        : `${kk * 16 * cb.pitch}u + ${col}`;
      const fn = B.kContig ? COL_LOAD : ROW_LOAD;
      step.push(`let fb${j} = ${fn}<coop_mat16x16<f16, B>>(&b_sh[${at}], ${cb.pitch}u);`);
    }
    for (let i = 0; i < FM; i++) {
      const row = `wy * ${TM}u + ${i * 16}u`;
      const at = A.kContig
        ? `(${row}) * ${ca.pitch}u + ${kk * 16}u`
        : `${kk * 16 * ca.pitch}u + ${row}`;
      const fn = A.kContig ? ROW_LOAD : COL_LOAD;
      step.push(`let fa${i} = ${fn}<coop_mat16x16<f16, A>>(&a_sh[${at}], ${ca.pitch}u);`);
      for (let j = 0; j < FN; j++) {
        step.push(`acc${i}_${j} = coopMultiplyAdd(fa${i}, fb${j}, acc${i}_${j});`);
      }
    }
    mma.push(`{\n      ${step.join("\n      ")}\n    }`);
  }

  const slabPos = R > 1
    ? `let sl = g / ${tilesK}u;
    let k0 = (g % ${tilesK}u) * ${t.bk}u;
    let a_base = a_bz + ${offsetExpr("sl", bd("a", reduce), 1)};
    let b_base = b_bz + ${offsetExpr("sl", bd("b", reduce), 1)};`
    : `let k0 = g * ${t.bk}u;
    let a_base = a_bz;
    let b_base = b_bz;`;
  const loadAt = (g: string) =>
    `{
    let g = ${g};
    ${slabPos}
    ${ca.load.join("\n    ")}
    ${cb.load.join("\n    ")}
  }`;
  const splitCode = split > 1
    ? `let sp = z % ${split}u;
  let bz = z / ${split}u;
  let t0 = sp * ${per}u;
  let t1 = min(t0 + ${per}u, ${total}u);`
    : `let sp = 0u;
  let bz = z;
  let t0 = 0u;
  let t1 = ${total}u;`;

  // Write-out: each fragment through the subgroup's scratch, lane l taking row l/2, 8 columns.
  let value = "v";
  if (spec.bias) value = `v + bias_in[${spec.biasRows ? "row" : "col"}]`;
  if (spec.activation) value = activationExpr(spec.activation, value, "f32");
  const out: string[] = [];
  for (let i = 0; i < FM; i++) {
    for (let j = 0; j < FN; j++) {
      out.push(`${ROW_STORE}(acc${i}_${j}, &c_sh[sc0], 16u);
  workgroupBarrier();
  {
    let row = m0 + wy * ${TM}u + ${i * 16}u + lane / 2u;
    let c0 = n0 + wx * ${TN}u + ${j * 16}u + (lane % 2u) * 8u;
    if (row < ${M}u) {
      for (var e = 0u; e < 8u; e++) {
        let col = c0 + e;
        let v = c_sh[sc0 + (lane / 2u) * 16u + (lane % 2u) * 8u + e];
        if (col < ${N}u) { c_out[c_base + row * ${N}u + col] = ${value}; }
      }
    }
  }
  workgroupBarrier();`);
    }
  }

  const accs: string[] = [];
  for (let i = 0; i < FM; i++) {
    for (let j = 0; j < FN; j++) accs.push(`var acc${i}_${j} = coop_mat16x16<f32, C>();`);
  }
  const bindings = [
    ro("a_in", A.vec ? "vec4<f32>" : "f32"),
    ro("b_in", B.vec ? "vec4<f32>" : "f32"),
    ...(spec.bias ? [ro("bias_in")] : []),
    rw("c_out"),
  ];
  const code =
    `// matmul_coop ${M}x${N}x${K} transA=${transA} transB=${transB} batch=${batchCount} R=${R} split=${split} tile=${t.bm}x${t.bn}x${t.bk}/${t.wm}x${t.wn}
var<workgroup> a_sh: ${ca.decl};
var<workgroup> b_sh: ${cb.decl};
var<workgroup> c_sh: array<f32, ${(threads / SUBGROUP) * 256}>;
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let z = wid.z;
  ${splitCode}
  let m0 = wid.y * ${t.bm}u;
  let n0 = wid.x * ${t.bn}u;
  let a_o0 = m0;
  let b_o0 = n0;
  let sg = lid / ${SUBGROUP}u;
  let lane = lid % ${SUBGROUP}u;
  let wy = sg / ${t.wn}u;
  let wx = sg % ${t.wn}u;
  let sc0 = sg * 256u;
  let a_bz = ${offsetExpr("bz", bd("a", spec.batch), 1)};
  let b_bz = ${offsetExpr("bz", bd("b", spec.batch), 1)};
  ${ca.setup.join("\n  ")}
  ${cb.setup.join("\n  ")}
  ${accs.join("\n  ")}
  ${total === 0 ? "" : loadAt("t0")}
  for (var g0 = t0; g0 < t1; g0++) {
    ${ca.store.join("\n    ")}
    ${cb.store.join("\n    ")}
    workgroupBarrier();
    if (g0 + 1u < t1) ${loadAt("g0 + 1u")}
    ${mma.join("\n    ")}
    workgroupBarrier();
  }
  let c_base = (sp * ${batchCount}u + bz) * ${M * N}u;
  ${out.join("\n  ")}
}`;
  const k = kernel("matmul_coop", bindings, [tilesN, tilesM, Z], code);
  return { ...k, code: COOP_ENABLES + k.code }; // directives precede every declaration
}

export const matmulCoopKernel = cached(matmulCoopKernelGen);

/** 64×64 tiles (4 subgroups of 2×2 fragments) for outputs too small to fill the GPU with 128×128. */
export const COOP_TILE_SMALL: CoopTile = { bm: 64, bn: 64, bk: 32, wm: 2, wn: 2 };

/** Tile and reduction split for C[batch][m, n] over r·k: the large tile where it makes enough
 * workgroups for the device's SMs (activeProfile().busyThreads / 512 of them), else the small
 * one, and a split of the reduction where even that leaves most SMs idle. */
export function planCoop(
  m: number,
  n: number,
  k: number,
  batch = 1,
  r = 1,
): { tile: CoopTile; split: number } {
  const sms = Math.max(1, Math.round(activeProfile().busyThreads / 512));
  const tiles = (t: CoopTile) => Math.ceil(m / t.bm) * Math.ceil(n / t.bn) * batch;
  const tile = tiles(COOP_TILE) >= 2 * sms ? COOP_TILE : COOP_TILE_SMALL;
  const count = tiles(tile);
  const slabs = r * Math.ceil(k / tile.bk);
  let split = 1;
  if (count < sms && slabs >= 16) {
    split = Math.max(1, Math.min(Math.ceil((2 * sms) / count), Math.floor(slabs / 8), 256));
    split = Math.ceil(slabs / Math.ceil(slabs / split)); // no empty part
  }
  return { tile, split };
}
