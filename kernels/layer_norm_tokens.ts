// Layer normalisation of contiguous rows ([..., C] tokens: MiT, BIT's transformer): T threads
// share a row and a 256-thread workgroup holds 256 / T rows, so one warp reads whole rows with
// vec4 loads. The row-per-thread kernel of layer_norm.ts read 128-byte-strided addresses three
// times over and ran 30× under the memory bound on BIT's 262,144 rows of 32.
// The backward also sums the weight and bias gradients of its rows per workgroup (partials
// [groups, C], a short reduce after), instead of writing g·x̂ for a separate column sum.

import { type Binding, cached, f, groupGrid, type Kernel, kernel, ro, rw } from "./common.ts";

const THREADS = 256;

/** How a row of `len` floats is spread over threads: vec4 or scalar elements (`width`), `vecs`
 * elements per row, `t` threads per row, `k` elements per thread, `rows` rows per workgroup. */
export interface TokenTiling {
  width: 1 | 4;
  vecs: number;
  t: number;
  k: number;
  rows: number;
}

export function tokenTiling(len: number): TokenTiling {
  const width = len % 4 === 0 ? 4 : 1;
  const vecs = len / width;
  let t = 1;
  while (t < vecs && t < 32) t *= 2;
  return { width, vecs, t, k: Math.ceil(vecs / t), rows: THREADS / t };
}

function types(width: 1 | 4): { vt: string; hsum: (e: string) => string; splat: string } {
  return width === 4
    ? { vt: "vec4<f32>", hsum: (e) => `dot(${e}, vec4<f32>(1.0))`, splat: "vec4<f32>" }
    : { vt: "f32", hsum: (e) => e, splat: "f32" };
}

/** The bindings of read-only `ins` then read-write `outs`, each a [name, WGSL type] pair. */
function io(ins: [string, string][], outs: [string, string][]): Binding[] {
  return [...ins.map(([n, t]) => ro(n, t)), ...outs.map(([n, t]) => rw(n, t))];
}

/** Each row's sum of `v` over its T threads, through workgroup array `sh` (every thread gets the
 * same value, summed in the same order). Two barriers: before reading, and before the array is
 * written again. */
function rowSum(sh: string, v: string, out: string, t: number): string {
  return `  ${sh}[li] = ${v};
  workgroupBarrier();
  var ${out} = 0.0;
  for (var i = 0u; i < ${t}u; i++) { ${out} += ${sh}[slot * ${t}u + i]; }
  workgroupBarrier();`;
}

export interface TokenNormSpec {
  rows: number;
  len: number;
  eps: number;
  weight: boolean;
  bias: boolean;
}

/** y = (x − mean)·rstd·w + b per row; inputs x, [w], [b]; outputs y, mean, rstd ([rows]). */
function tokenNormKernelGen(s: TokenNormSpec): Kernel {
  const tl = tokenTiling(s.len);
  const { vt, hsum, splat } = types(tl.width);
  const grid = groupGrid(Math.ceil(s.rows / tl.rows));
  const ins: [string, string][] = [["x", vt]];
  if (s.weight) ins.push(["w", vt]);
  if (s.bias) ins.push(["b", vt]);
  const ks = Array.from({ length: tl.k }, (_, k) => k);
  const col = (k: number) => `t + ${k * tl.t}u`;
  const inRow = (
    k: number,
  ) => (k * tl.t + tl.t <= tl.vecs ? "ok" : `ok && ${col(k)} < ${tl.vecs}u`);
  let expr = (k: number) => `(v${k} - ${splat}(mu)) * rs`;
  if (s.weight) {
    const e0 = expr;
    expr = (k) => `${e0(k)} * w[${col(k)}]`;
  }
  if (s.bias) {
    const e1 = expr;
    expr = (k) => `${e1(k)} + b[${col(k)}]`;
  }
  return kernel(
    "layer_norm",
    io(ins, [["y", vt], ["mean", "f32"], ["rstd", "f32"]]),
    grid.workgroups,
    `var<workgroup> sh: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let slot = li / ${tl.t}u;
  let t = li % ${tl.t}u;
  let r = ${grid.index} * ${tl.rows}u + slot;
  let ok = r < ${s.rows}u;
  let base = r * ${tl.vecs}u;
  var s = 0.0;
${
      ks.map((k) =>
        `  var v${k} = ${splat}(0.0);
  if (${inRow(k)}) { v${k} = x[base + ${col(k)}]; s += ${hsum(`v${k}`)}; }`
      ).join("\n")
    }
${rowSum("sh", "s", "sum", tl.t)}
  let mu = sum / ${f(s.len)};
  var q = 0.0;
${
      ks.map((k) => `  if (${inRow(k)}) { let d = v${k} - ${splat}(mu); q += ${hsum("d * d")}; }`)
        .join("\n")
    }
${rowSum("sh", "q", "sq", tl.t)}
  let rs = inverseSqrt(sq / ${f(s.len)} + ${f(s.eps)});
${ks.map((k) => `  if (${inRow(k)}) { y[base + ${col(k)}] = ${expr(k)}; }`).join("\n")}
  if (ok && t == 0u) {
    mean[r] = mu;
    rstd[r] = rs;
  }
}`,
  );
}

export interface TokenNormGradSpec {
  rows: number;
  len: number;
  /** The forward had a weight (dx uses g·w). */
  weight: boolean;
  /** Write dx. */
  dx: boolean;
  /** Write per-workgroup partial sums of g·x̂ (weight gradient) and of g (bias gradient). */
  dw: boolean;
  db: boolean;
  /** Row groups (of `tokenTiling(len).rows` rows) each workgroup walks; see tokenNormGradIters. */
  iters: number;
}

/** Row groups per workgroup of the backward: enough workgroups to fill a large GPU (≥ 1024 once
 * there are 2048 row groups), each amortising its partial-sum write over up to 8 row groups. */
export function tokenNormGradIters(rows: number, len: number): number {
  const rowGroups = Math.ceil(rows / tokenTiling(len).rows);
  return Math.max(1, Math.min(8, Math.floor(rowGroups / 1024)));
}

/** Workgroups of the backward: the rows of partial-sum outputs. */
export function tokenNormGradGroups(s: TokenNormGradSpec): number {
  return Math.ceil(Math.ceil(s.rows / tokenTiling(s.len).rows) / s.iters);
}

/** dx = rstd·(gw − mean(gw) − x̂·mean(gw·x̂)), gw = g·w; pw/pb[group, c] = Σ over the group's rows
 * of g·x̂ / g. Inputs x, g, mean, rstd, then w when dx is written with a weight; outputs
 * [dx], [pw], [pb]. */
function tokenNormGradKernelGen(s: TokenNormGradSpec): Kernel {
  if (!s.dx && !s.dw && !s.db) throw new Error("tokenNormGradKernel: nothing to write");
  const tl = tokenTiling(s.len);
  const { vt, hsum, splat } = types(tl.width);
  const ng = tokenNormGradGroups(s);
  const grid = groupGrid(ng);
  const useW = s.dx && s.weight;
  const ins: [string, string][] = [["x", vt], ["g", vt], ["mean", "f32"], ["rstd", "f32"]];
  if (useW) ins.push(["w", vt]);
  const outs: [string, string][] = [];
  if (s.dx) outs.push(["dx", vt]);
  if (s.dw) outs.push(["pw", vt]);
  if (s.db) outs.push(["pb", vt]);
  const ks = Array.from({ length: tl.k }, (_, k) => k);
  const col = (k: number) => `t + ${k * tl.t}u`;
  const full = (k: number) => k * tl.t + tl.t <= tl.vecs;
  const inRow = (k: number) => (full(k) ? "ok" : `ok && ${col(k)} < ${tl.vecs}u`);
  const gw = (k: number) => (useW ? `g${k} * w[${col(k)}]` : `g${k}`);
  const dxPart = s.dx
    ? `    var a = 0.0;
    var c = 0.0;
${ks.map((k) => `    a += ${hsum(gw(k))};\n    c += ${hsum(`${gw(k)} * h${k}`)};`).join("\n")}
    sa[li] = a;
    sc[li] = c;
    workgroupBarrier();
    var at = 0.0;
    var ct = 0.0;
    for (var i = 0u; i < ${tl.t}u; i++) {
      at += sa[slot * ${tl.t}u + i];
      ct += sc[slot * ${tl.t}u + i];
    }
    workgroupBarrier();
    let am = at / ${f(s.len)};
    let cm = ct / ${f(s.len)};
${
      ks.map((k) =>
        `    if (${inRow(k)}) { dx[base + ${col(k)}] = rs * (${
          gw(k)
        } - ${splat}(am) - h${k} * cm); }`
      ).join("\n")
    }`
    : "";
  const accs = [...(s.dw ? ["aw"] : []), ...(s.db ? ["ab"] : [])];
  const accumulate = ks.map((k) =>
    [
      ...(s.dw ? [`    aw${k} += g${k} * h${k};`] : []),
      ...(s.db ? [`    ab${k} += g${k};`] : []),
    ].join("\n")
  ).join("\n");
  // Partials: the workgroup's row slots hold accumulators of the same columns; slot 0 sums them.
  const partials = accs.map((acc) => {
    const out = acc === "aw" ? "pw" : "pb";
    return ks.map((k) =>
      `  sv[li] = ${acc}${k};
  workgroupBarrier();
  if (slot == 0u && ${col(k)} < ${tl.vecs}u) {
    var p = ${splat}(0.0);
    for (var i = 0u; i < ${tl.rows}u; i++) { p += sv[i * ${tl.t}u + t]; }
    ${out}[grp * ${tl.vecs}u + ${col(k)}] = p;
  }
  workgroupBarrier();`
    ).join("\n");
  }).join("\n");
  return kernel(
    "layer_norm_grad",
    io(ins, outs),
    grid.workgroups,
    `${
      s.dx
        ? `var<workgroup> sa: array<f32, ${THREADS}>;\nvar<workgroup> sc: array<f32, ${THREADS}>;`
        : ""
    }
${accs.length ? `var<workgroup> sv: array<${vt}, ${THREADS}>;` : ""}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let slot = li / ${tl.t}u;
  let t = li % ${tl.t}u;
  let grp = ${grid.index};
${accs.flatMap((a) => ks.map((k) => `  var ${a}${k} = ${splat}(0.0);`)).join("\n")}
  for (var it = 0u; it < ${s.iters}u; it++) {
    // Row groups interleave across workgroups, so concurrent workgroups read neighbouring rows.
    let r = (it * ${ng}u + grp) * ${tl.rows}u + slot;
    let ok = r < ${s.rows}u;
    let base = r * ${tl.vecs}u;
    var mu = 0.0;
    var rs = 0.0;
    if (ok) {
      mu = mean[r];
      rs = rstd[r];
    }
${
      ks.map((k) =>
        `    var g${k} = ${splat}(0.0);
    var h${k} = ${splat}(0.0);
    if (${inRow(k)}) {
      g${k} = g[base + ${col(k)}];
      h${k} = (x[base + ${col(k)}] - ${splat}(mu)) * rs;
    }`
      ).join("\n")
    }
${accumulate}
${dxPart}
  }
${partials}
}`,
  );
}

export const tokenNormKernel = cached(tokenNormKernelGen);
export const tokenNormGradKernel = cached(tokenNormGradKernelGen);
