// Batched matrix multiplication C = op(A) × op(B): register-blocked tiles staged through shared
// memory. Each workgroup computes a bm×bn tile of C, each thread tm×tn outputs held in vec4
// registers, reading A and B in bk-deep slabs. Shapes, transposes, strides and the epilogue are
// baked in, and every shared-memory and register index is a per-thread base plus a constant, so
// the unrolled inner loop carries no index arithmetic beyond what WebGPU's bounds clamps need.
//
// Memory layouts (row-major): A is [M, K], or [K, M] when transA; B is [K, N], or [N, K] when
// transB; C is contiguous [split, batch..., M, N]. Batch dims give each operand an element stride
// (0 where it broadcasts). Reduced dims are summed over like K (for gradients of broadcast
// operands), and `split` cuts the whole reduction into partial sums (splitSumKernel adds them).

import { cached, groupGrid, type Kernel, kernel, kernel1d, prod, ro, rw } from "./common.ts";
import { offsetExpr, type Operand, operandCode } from "./matmul_operand.ts";

export interface TileConfig {
  /** Tile of C per workgroup (rows, columns) and reduction depth per step. */
  bm: number;
  bn: number;
  bk: number;
  /** Outputs per thread (rows, columns); multiples of 4. Threads = (bm/tm)·(bn/tn). */
  tm: number;
  tn: number;
  /** Launch tiles in groups of this many tile rows, so workgroups running together share the
   * slabs of B they read (L2 reuse). 0 or 1: row-major order. */
  swizzle?: number;
  /** Global-load order for operands stored with K contiguous: walk K first (coalesced reads) or
   * the rows first (conflict-free transposing stores into shared memory). */
  kFirst?: boolean;
}

/** One batch dimension: its size and each operand's element stride along it (0: broadcast). */
export interface BatchDim {
  size: number;
  a: number;
  b: number;
}

export interface MatmulSpec {
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  /** Batch dims of C, outermost first. */
  batch: BatchDim[];
  /** Batch dims summed over, outermost first (none for a plain product). */
  reduce?: BatchDim[];
  /** Cut the reduction into this many partial products, written one after another. */
  split?: number;
  /** Add a bias (binding after A and B): bias[n] to every row, or bias[m] to every column when
   * biasRows (a 1×1 convolution's channel bias). Not with split > 1. */
  bias?: boolean;
  biasRows?: boolean;
  activation?: MatmulActivation;
  /** Operands stored in half precision (f16: the Winograd transforms' storage under
   * engine/precision.ts halfStorage): converted to f32 on their way into shared memory; products
   * and sums stay f32, and a half C is rounded once at the write-out. */
  halfA?: boolean;
  halfB?: boolean;
  halfC?: boolean;
  tile: TileConfig;
}

/** The default large tile: 128×128 per workgroup, 8×8 per thread, 256 threads, 16-deep slabs in
 * one shared stage with the next slab prefetched into registers (43 TFLOP/s at 8192³ on an H200,
 * where two stages with a run-time stage index gave 30). */
export const TILE_LARGE: TileConfig = {
  bm: 128,
  bn: 128,
  bk: 16,
  tm: 8,
  tn: 8,
  swizzle: 8,
  kFirst: true,
};

export const MAX_DIM_GROUPS = 65535;

/** Activations the epilogue applies after the bias. */
export type MatmulActivation = "relu" | "sigmoid" | "silu";

/** WGSL of act(v) for a value of type `t` (f32 or vec4<f32>). */
export function activationExpr(a: MatmulActivation, v: string, t: string): string {
  const z = `(${v})`;
  switch (a) {
    case "relu":
      return `max(${z}, ${t}(0.0))`;
    case "sigmoid":
      return `(${t}(1.0) / (${t}(1.0) + exp(-${z})))`;
    case "silu":
      return `(${z} / (${t}(1.0) + exp(-${z})))`;
  }
}

function checkTile(t: TileConfig): void {
  const ok = t.tm % 4 === 0 && t.tn % 4 === 0 && t.bm % t.tm === 0 && t.bn % t.tn === 0 &&
    t.bk % 4 === 0 && t.bk > 0;
  const threads = (t.bm / t.tm) * (t.bn / t.tn);
  if (!ok || threads > 256 || threads < 1) {
    throw new Error(`matmul: bad tile ${JSON.stringify(t)}`);
  }
}

/** The matmul kernel for one spec. Bindings: a, b, [bias], c. */
function matmulKernelGen(spec: MatmulSpec): Kernel {
  const t = spec.tile;
  checkTile(t);
  const { m: M, n: N, k: K, transA, transB } = spec;
  const reduce = spec.reduce ?? [];
  const split = spec.split ?? 1;
  if (split > 1 && (spec.bias || spec.activation)) {
    throw new Error("matmul: bias and activation go into splitSumKernel when split > 1");
  }
  const TX = t.bn / t.tn, TY = t.bm / t.tm, threads = TX * TY;
  const tilesN = Math.ceil(N / t.bn), tilesM = Math.ceil(M / t.bm);
  const tilesK = Math.ceil(K / t.bk);
  const R = prod(reduce.map((d) => d.size));
  const total = R * tilesK;
  const per = Math.ceil(total / split);
  if (split > 1 && (split - 1) * per >= total) {
    throw new Error(`matmul: split ${split} of ${total} slabs leaves a part empty`);
  }
  const batchCount = prod(spec.batch.map((d) => d.size));
  const Z = batchCount * split;
  const aStrides = [...spec.batch, ...reduce].map((d) => d.a);
  const bStrides = [...spec.batch, ...reduce].map((d) => d.b);
  const vecA = (transA ? M : K) % 4 === 0 && aStrides.every((s) => s % 4 === 0);
  const vecB = (transB ? K : N) % 4 === 0 && bStrides.every((s) => s % 4 === 0);
  const vecC = N % 4 === 0;
  const A: Operand = {
    name: "a",
    outer: M,
    tileOuter: t.bm,
    kMajor: transA,
    ld: transA ? M : K,
    vec: vecA,
    half: spec.halfA,
  };
  const B: Operand = {
    name: "b",
    outer: N,
    tileOuter: t.bn,
    kMajor: !transB,
    ld: transB ? K : N,
    vec: vecB,
    half: spec.halfB,
  };
  const ca = operandCode(A, spec, threads);
  const cb = operandCode(B, spec, threads);

  // Launch grid: x over N tiles, y over M tiles, z over batch × split (folded into y if large).
  let zExpr = "wid.z", yExpr = "wid.y", gy = tilesM, gz = Z, zGuard = "";
  if (Z > MAX_DIM_GROUPS) {
    const zy = Math.ceil(Z / MAX_DIM_GROUPS);
    gy = tilesM * zy;
    gz = MAX_DIM_GROUPS;
    zExpr = `(wid.y / ${tilesM}u) * ${MAX_DIM_GROUPS}u + wid.z`;
    yExpr = `(wid.y % ${tilesM}u)`;
    zGuard = `if (z >= ${Z}u) { return; }`;
  }
  if (tilesN > MAX_DIM_GROUPS || gy > MAX_DIM_GROUPS) {
    throw new Error(`matmul: ${M}×${N} output too large for one launch`);
  }
  let tileCode: string;
  const G = t.swizzle ?? 0;
  if (G > 1 && tilesM > G) {
    // Grouped order: consecutive workgroups walk down G tile rows before moving right.
    tileCode = `let lin = ${yExpr} * ${tilesN}u + wid.x;
  let grp = lin / ${G * tilesN}u;
  let first = grp * ${G}u;
  let gsz = min(${tilesM}u - first, ${G}u);
  let inGrp = lin % ${G * tilesN}u;
  let tmI = first + inGrp % gsz;
  let tnI = inGrp / gsz;`;
  } else tileCode = `let tmI = ${yExpr};\n  let tnI = wid.x;`;

  // Offsets of the batch entry (z) and of the reduced slice, in each operand's load units.
  const uA = vecA ? 4 : 1, uB = vecB ? 4 : 1;
  const bd = (key: "a" | "b", dims: BatchDim[]) =>
    dims.map((d) => ({ size: d.size, stride: d[key] }));
  const aBatch = offsetExpr("bz", bd("a", spec.batch), uA);
  const bBatch = offsetExpr("bz", bd("b", spec.batch), uB);
  const aSlice = R > 1 ? offsetExpr("sl", bd("a", reduce), uA) : "0u";
  const bSlice = R > 1 ? offsetExpr("sl", bd("b", reduce), uB) : "0u";
  const slabPos = R > 1
    ? `let sl = g / ${tilesK}u;
    let k0 = (g % ${tilesK}u) * ${t.bk}u;
    let a_base = a_bz + ${aSlice};
    let b_base = b_bz + ${bSlice};`
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
  const storeAt = (buf: string) =>
    `{
    let a_st = ${buf};
    let b_st = ${buf};
    ${ca.store.join("\n    ")}
    ${cb.store.join("\n    ")}
  }`;

  // Inner product over one slab: per k, tm/4 vec4 of A and tn/4 vec4 of B, tm·tn/4 vec4 FMAs.
  const gm = t.tm / 4, gn = t.tn / 4;
  const acc: string[] = [];
  for (let i = 0; i < t.tm; i++) for (let j = 0; j < gn; j++) acc.push(`c${i}_${j}`);
  const compute: string[] = [];
  for (let kk = 0; kk < t.bk; kk++) {
    for (let gi = 0; gi < gm; gi++) {
      compute.push(`let a${gi}_${kk} = ${ca.sh("st", `${kk}u`, `ra${gi}`)};`);
    }
    for (let gj = 0; gj < gn; gj++) {
      compute.push(`let b${gj}_${kk} = ${cb.sh("st", `${kk}u`, `rb${gj}`)};`);
    }
    for (let i = 0; i < t.tm; i++) {
      const av = `a${Math.floor(i / 4)}_${kk}.${"xyzw"[i % 4]}`;
      for (let gj = 0; gj < gn; gj++) {
        compute.push(`c${i}_${gj} = fma(vec4<f32>(${av}), b${gj}_${kk}, c${i}_${gj});`);
      }
    }
  }
  const computeAt = (buf: string) =>
    `{
    let st = ${buf};
    ${compute.join("\n    ")}
  }`;

  const loop = total === 0 ? "" : `${loadAt("t0")}
  for (var g0 = t0; g0 < t1; g0++) {
    ${storeAt("0u")}
    workgroupBarrier();
    if (g0 + 1u < t1) ${loadAt("g0 + 1u")}
    ${computeAt("0u")}
    workgroupBarrier();
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

  // Epilogue: bias, activation, bounds-checked (where needed) stores.
  const checkM = M % t.bm !== 0, checkN = N % t.bn !== 0;
  const uC = vecC ? 4 : 1;
  const cv = (v: string, vec: boolean) => (spec.halfC ? `${vec ? "vec4<f16>" : "f16"}(${v})` : v);
  const epi: string[] = [];
  for (let gj = 0; gj < gn; gj++) {
    epi.push(`let col${gj} = tnI * ${t.bn}u + ${gj * 4 * TX}u + tx * 4u;`);
    if (spec.bias && !spec.biasRows) {
      if (vecC) epi.push(`let bias${gj} = bias_in[col${gj} / 4u];`);
      else {
        const parts = [0, 1, 2, 3].map((j) => `bias_in[min(col${gj} + ${j}u, ${N - 1}u)]`);
        epi.push(`let bias${gj} = vec4<f32>(${parts.join(", ")});`);
      }
    }
  }
  for (let i = 0; i < t.tm; i++) {
    const row = `tmI * ${t.bm}u + ${Math.floor(i / 4) * 4 * TY}u + ty * 4u + ${i % 4}u`;
    const body: string[] = [`let row = ${row};`];
    if (spec.bias && spec.biasRows) {
      body.push(`let bias_r = vec4<f32>(bias_in[${checkM ? `min(row, ${M - 1}u)` : "row"}]);`);
    }
    for (let gj = 0; gj < gn; gj++) {
      let v = `c${i}_${gj}`;
      if (spec.bias) v = `(${v} + ${spec.biasRows ? "bias_r" : `bias${gj}`})`;
      if (spec.activation) v = activationExpr(spec.activation, v, "vec4<f32>");
      if (vecC) {
        const st = `c_out[c_base + row * ${N / 4}u + col${gj} / 4u] = ${cv(v, true)};`;
        body.push(checkN ? `if (col${gj} < ${N}u) { ${st} }` : st);
      } else {
        body.push(`{ let v = ${v};`);
        for (let j = 0; j < 4; j++) {
          body.push(
            `  if (col${gj} + ${j}u < ${N}u) { c_out[c_base + row * ${N}u + col${gj} + ${j}u] = ${
              cv(`v[${j}]`, false)
            }; }`,
          );
        }
        body.push("}");
      }
    }
    epi.push(
      `${checkM ? `if (${row} < ${M}u) ` : ""}{\n    ${body.join("\n    ")}\n  }`,
    );
  }

  // Which operands are half precision ("AC": a and the result), for the comment and the label.
  const halves = ["A", "B", "C"].filter((_, i) => [spec.halfA, spec.halfB, spec.halfC][i]).join("");
  const v4 = (vec: boolean, half = false) => {
    const e = half ? "f16" : "f32";
    return vec ? `vec4<${e}>` : e;
  };
  const bindings = [
    ro("a_in", v4(vecA, spec.halfA)),
    ro("b_in", v4(vecB, spec.halfB)),
    ...(spec.bias ? [ro("bias_in", v4(!spec.biasRows && vecC))] : []),
    rw("c_out", v4(vecC, spec.halfC)),
  ];

  const code =
    `// matmul ${M}x${N}x${K} transA=${transA} transB=${transB} batch=${batchCount} R=${R} split=${split} tile=${t.bm}x${t.bn}x${t.bk}/${t.tm}x${t.tn}${
      halves ? ` half=${halves}` : ""
    }
var<workgroup> a_sh: ${ca.decl};
var<workgroup> b_sh: ${cb.decl};
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let z = ${zExpr};
  ${zGuard}
  ${tileCode}
  ${splitCode}
  let tx = lid % ${TX}u;
  let ty = lid / ${TX}u;
  let a_o0 = tmI * ${t.bm / uA}u;
  let a_o0e = tmI * ${t.bm}u;
  let b_o0 = tnI * ${t.bn / uB}u;
  let b_o0e = tnI * ${t.bn}u;
  ${Array.from({ length: gm }, (_, gi) => `let ra${gi} = ty + ${gi * TY}u;`).join("\n  ")}
  ${Array.from({ length: gn }, (_, gj) => `let rb${gj} = tx + ${gj * TX}u;`).join("\n  ")}
  let a_bz = ${aBatch};
  let b_bz = ${bBatch};
  ${ca.setup.join("\n  ")}
  ${cb.setup.join("\n  ")}
  ${acc.map((c) => `var ${c} = vec4<f32>(0.0);`).join("\n  ")}
  ${loop}
  let c_base = (sp * ${batchCount}u + bz) * ${(M * N) / uC}u;
  ${epi.join("\n  ")}
}`;
  return {
    ...kernel("matmul", bindings, [tilesN, gy, gz], code),
    detail: `${M}x${N}x${K} batch=${batchCount} R=${R} split=${split} tile=${t.bm}x${t.bn}${
      halves ? " f16" : ""
    }`,
  };
}

export interface SplitSumSpec {
  splits: number;
  /** Elements of one partial result (batch·M·N) and its row length N (for the bias). */
  count: number;
  n: number;
  /** Rows per matrix (M), for a per-row bias. */
  m: number;
  bias?: boolean;
  biasRows?: boolean;
  activation?: MatmulActivation;
  /** Write the sums in half precision (a half C). */
  half?: boolean;
}

/** Threads that keep a large GPU busy; a split sum with fewer outputs spreads each output's
 * sum over lanes. */
const SPLIT_SUM_THREADS = 1 << 16;

/** Lanes (threads summing one output together) of a split sum: a power of two ≤ 64 and ≤ the
 * splits, enough for count·lanes to reach SPLIT_SUM_THREADS. Weight gradients of long
 * reductions (32×128 outputs, 500+ splits) ran 0.1 ms a call on 4 workgroups with one. */
export function splitSumLanes(count: number, splits: number): number {
  let lanes = 1;
  while (lanes < 64 && lanes * 2 <= splits && count * lanes < SPLIT_SUM_THREADS) lanes *= 2;
  return lanes;
}

/** out[i] = act(Σ_s part[s·count + i] + bias[i % n]). Bindings: part, [bias], out. */
function splitSumKernelGen(spec: SplitSumSpec): Kernel {
  let v = "acc";
  if (spec.bias) {
    const bi = spec.biasRows ? `(i / ${spec.n}u) % ${spec.m}u` : `i % ${spec.n}u`;
    v = `${v} + bias_in[${bi}]`;
  }
  if (spec.activation) v = activationExpr(spec.activation, v, "f32");
  if (spec.half) v = `f16(${v})`;
  const bindings = [
    ro("part"),
    ...(spec.bias ? [ro("bias_in")] : []),
    rw("out", spec.half ? "f16" : "f32"),
  ];
  const lanes = splitSumLanes(spec.count, spec.splits);
  if (lanes === 1) {
    return kernel1d(
      "matmul_split_sum",
      bindings,
      spec.count,
      `var acc = 0.0;
  for (var s = 0u; s < ${spec.splits}u; s++) { acc += part[i + s * ${spec.count}u]; }
  out[i] = ${v};`,
    );
  }
  // 256 threads: 256 / lanes neighbouring outputs (coalesced reads) × lanes; lane l sums splits
  // l, l + lanes, …; lane 0 adds the lanes up.
  const per = 256 / lanes;
  const g = groupGrid(Math.ceil(spec.count / per));
  return kernel(
    "matmul_split_sum",
    bindings,
    g.workgroups,
    `var<workgroup> sh: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = ${g.index} * ${per}u + li % ${per}u;
  let lane = li / ${per}u;
  let ok = i < ${spec.count}u;
  var acc = 0.0;
  if (ok) {
    for (var s = lane; s < ${spec.splits}u; s += ${lanes}u) { acc += part[i + s * ${spec.count}u]; }
  }
  sh[li] = acc;
  workgroupBarrier();
  if (ok && lane == 0u) {
    for (var l = 1u; l < ${lanes}u; l++) { acc += sh[l * ${per}u + li]; }
    out[i] = ${v};
  }
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const matmulKernel = cached(matmulKernelGen);
export const splitSumKernel = cached(splitSumKernelGen);
