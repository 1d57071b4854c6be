// Plane statistics over NCHW planes (a plane is one (b, c) image of H·W values), shared by batch
// and instance normalisation, PReLU's shared-slope gradient and LayerNorm: two-stage reductions.
// Stage 1 gives per-chunk partials (one workgroup per chunk of a plane, so 8×512×512 inputs keep
// every core busy), stage 2 combines a group's partials (a channel across the batch for batch
// norm, one plane for instance norm). Means and variances are combined with Chan's parallel
// formula, so large means do not cancel the variance away. kernels/norm.ts has the normalisation's
// per-element passes.

import { cached, f, groupGrid, type Kernel, kernel, ro, rw } from "./common.ts";

export interface PlaneLayout {
  batch: number;
  channels: number;
  /** Elements per plane (H·W). */
  planeSize: number;
}

/** Which partials one statistic combines: a channel over the batch (batch norm), one plane
 * (instance norm), or everything (a shared PReLU slope). */
export type StatGroup = "channel" | "plane" | "all";

export const WG = 256;
const FINISH_WG = 64;

/** Elements one stage-1 workgroup reduces: 16 per thread, or the whole plane when smaller. */
export function chunkFor(planeSize: number): number {
  return Math.max(1, Math.min(planeSize, WG * 16));
}

export function chunksPerPlane(l: PlaneLayout, chunk: number): number {
  return Math.ceil(l.planeSize / chunk);
}

/** Number of stage-1 partials (each holds `terms` floats). */
export function partialCount(l: PlaneLayout, chunk: number): number {
  return l.batch * l.channels * chunksPerPlane(l, chunk);
}

export function groupCount(l: PlaneLayout, group: StatGroup): number {
  return group === "channel" ? l.channels : group === "plane" ? l.batch * l.channels : 1;
}

/** Whether the per-element passes of this layout run on vec4. */
export function useVec4(l: PlaneLayout): boolean {
  return l.planeSize % 4 === 0;
}

/** Binding option of the V alias (f32 or vec4<f32>) and of f32 statistics. */
export const F32 = { dtype: "f32" } as const;

/** WGSL `alias V` (the element type of the per-element arrays) for a layout. */
export function elementAlias(vec4: boolean): string {
  return `alias V = ${vec4 ? "vec4<f32>" : "f32"};`;
}

/** WGSL: the sum of the lanes of `v` (a V). */
export function lanes(vec4: boolean, v: string): string {
  return vec4 ? `dot(${v}, vec4<f32>(1.0))` : v;
}

/** WGSL: the statistic index of `plane` (a u32 expression) in `group`. */
export function statOfPlane(l: PlaneLayout, group: StatGroup, plane: string): string {
  return group === "channel" ? `(${plane} % ${l.channels}u)` : group === "plane" ? plane : "0u";
}

function treeReduce(arrays: string[], wg: number, combine?: string): string {
  const body = combine ??
    arrays.map((a) => `${a}[lid] = ${a}[lid] + ${a}[lid + s];`).join(" ");
  return `  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { ${body} }
    workgroupBarrier();
  }`;
}

/** The per-workgroup prologue of a stage-1 kernel: which plane and chunk, where it starts and
 * how many elements it has. */
function chunkPrologue(
  l: PlaneLayout,
  chunk: number,
): { workgroups: Kernel["workgroups"]; code: string } {
  const chunks = chunksPerPlane(l, chunk);
  const parts = partialCount(l, chunk);
  const g = groupGrid(parts);
  // start and n count V units (vec4 when the layout allows)
  const u = useVec4(l) ? 4 : 1;
  return {
    workgroups: g.workgroups,
    code: `  let w = ${g.index};
  if (w >= ${parts}u) { return; }
  let plane = w / ${chunks}u;
  let k = w % ${chunks}u;
  let start = plane * ${l.planeSize / u}u + k * ${chunk / u}u;
  let n = min(${chunk / u}u, ${l.planeSize / u}u - k * ${chunk / u}u);`,
  };
}

/** Stage 1 of the statistics: per chunk, (mean, M2 = Σ (x - mean)²), two floats per partial.
 * Sums are taken relative to the chunk's first value so that an offset does not cancel. */
function momentsPartialKernelGen(l: PlaneLayout, chunk: number): Kernel {
  const pro = chunkPrologue(l, chunk);
  const v = useVec4(l);
  return kernel(
    "norm_moments_partial",
    [ro("x", "V", F32), rw("part")],
    pro.workgroups,
    `${elementAlias(v)}
var<workgroup> s1: array<f32, ${WG}>;
var<workgroup> s2: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${pro.code}
  let shift = x[start]${v ? ".x" : ""};
  var a = V(0.0);
  var b = V(0.0);
  for (var r = lid; r < n; r += ${WG}u) {
    let d = x[start + r] - shift;
    a += d;
    b += d * d;
  }
  s1[lid] = ${lanes(v, "a")};
  s2[lid] = ${lanes(v, "b")};
${treeReduce(["s1", "s2"], WG)}
  if (lid == 0u) {
    let m = s1[0] / f32(n * ${v ? 4 : 1}u);
    part[2u * w] = shift + m;
    part[2u * w + 1u] = max(s2[0] - s1[0] * m, 0.0);
  }
}`,
  );
}

export interface PlaneSumsSpec {
  name: string;
  layout: PlaneLayout;
  chunk: number;
  /** Read-only f32 inputs at bindings 0..k-1, in order; `elementwise` ones have x's layout and
   * are read as V (vec4 when useVec4), the others (per-statistic values) as f32. */
  inputs: { name: string; elementwise: boolean }[];
  /** WGSL lines run once per workgroup after `plane` is known (e.g. load its statistics). */
  setup?: string;
  /** WGSL functions the terms call. */
  helpers?: string;
  /** WGSL expressions of type V summed over the chunk, in terms of the V index `e`; write
   * constants as V(…) so that they suit both f32 and vec4. */
  terms: string[];
  /** An elementwise result written in the same pass (a gradient whose statistics the terms
   * sum): `out[e] = expr`, bound after the partial sums with x's layout. */
  map?: string;
}

/** Stage 1 of plain sums: per chunk, Σ term for each term (terms.length floats per partial). */
function planeSumsPartialKernelGen(s: PlaneSumsSpec): Kernel {
  const pro = chunkPrologue(s.layout, s.chunk);
  const v = useVec4(s.layout);
  const t = s.terms.length;
  const bindings = [
    ...s.inputs.map((inp) => ro(inp.name, inp.elementwise ? "V" : "f32", F32)),
    rw("part"),
    ...(s.map ? [rw("out", "V", F32)] : []),
  ];
  const shared = s.terms.map((_, j) => `var<workgroup> sh${j}: array<f32, ${WG}>;`).join("\n");
  const accs = s.terms.map((_, j) => `  var a${j} = V(0.0);`).join("\n");
  const adds = s.terms.map((term, j) => `    a${j} += ${term};`).join("\n");
  const stores = s.terms.map((_, j) => `  sh${j}[lid] = ${lanes(v, `a${j}`)};`).join("\n");
  const writes = s.terms.map((_, j) => `part[${t}u * w + ${j}u] = sh${j}[0];`).join(" ");
  const mapLine = s.map ? `\n    out[e] = ${s.map};` : "";
  return kernel(
    s.name,
    bindings,
    pro.workgroups,
    `${elementAlias(v)}
${shared}
${s.helpers ?? ""}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${pro.code}
${s.setup ?? ""}
${accs}
  for (var r = lid; r < n; r += ${WG}u) {
    let e = start + r;
${adds}${mapLine}
  }
${stores}
${treeReduce(s.terms.map((_, j) => `sh${j}`), WG)}
  if (lid == 0u) { ${writes} }
}`,
  );
}

/** WGSL lines giving, for the group `grp` and its j-th partial, the partial index `p` and the
 * chunk index `k`; and the number of partials per group. */
function partialOfGroup(
  l: PlaneLayout,
  chunk: number,
  group: StatGroup,
): { perGroup: number; code: string } {
  const chunks = chunksPerPlane(l, chunk);
  if (group === "channel") {
    return {
      perGroup: l.batch * chunks,
      code: `let p = (j / ${chunks}u) * ${
        l.channels * chunks
      }u + grp * ${chunks}u + j % ${chunks}u;`,
    };
  }
  if (group === "plane") {
    return { perGroup: chunks, code: `let p = grp * ${chunks}u + j;` };
  }
  return { perGroup: partialCount(l, chunk), code: `let p = j;` };
}

export interface MomentsFinishSpec {
  layout: PlaneLayout;
  chunk: number;
  group: "channel" | "plane";
  eps: number;
  /** Also update running statistics in place: r = (1 − m)·r + m·batch, the variance unbiased. */
  runningMomentum?: number;
}

/** Stage 2 of the statistics: outputs mean and 1/sqrt(var + eps) per group (biased variance),
 * and with `runningMomentum` updates runningMean and runningVar (extra outputs, in place). */
function momentsFinishKernelGen(s: MomentsFinishSpec): Kernel {
  const { layout: l, chunk } = s;
  const groups = groupCount(l, s.group);
  const { perGroup, code: partOf } = partialOfGroup(l, chunk, s.group);
  const chunks = chunksPerPlane(l, chunk);
  const total = s.group === "plane" ? l.planeSize : l.batch * l.planeSize;
  const g = groupGrid(groups);
  const m = s.runningMomentum;
  const bindings = [
    ro("part"),
    rw("mean"),
    rw("rstd"),
    ...(m === undefined ? [] : [rw("running_mean"), rw("running_var")]),
  ];
  const update = m === undefined ? "" : `
    running_mean[grp] = ${f(1 - m)} * running_mean[grp] + ${f(m)} * cm[0];
    running_var[grp] = ${f(1 - m)} * running_var[grp] + ${f(m)} * cq[0] / ${
    f(Math.max(1, total - 1))
  };`;
  // Chan: merging (na, ma, qa) with (nb, mb, qb).
  const merge = `let nb = cn[lid + s];
      if (nb > 0.0) {
        let na = cn[lid];
        let nn = na + nb;
        let d = cm[lid + s] - cm[lid];
        cm[lid] = cm[lid] + d * nb / nn;
        cq[lid] = cq[lid] + cq[lid + s] + d * d * na * nb / nn;
        cn[lid] = nn;
      }`;
  return kernel(
    "norm_moments_finish",
    bindings,
    g.workgroups,
    `var<workgroup> cn: array<f32, ${FINISH_WG}>;
var<workgroup> cm: array<f32, ${FINISH_WG}>;
var<workgroup> cq: array<f32, ${FINISH_WG}>;
@compute @workgroup_size(${FINISH_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let grp = ${g.index};
  if (grp >= ${groups}u) { return; }
  var n = 0.0;
  var mu = 0.0;
  var q = 0.0;
  for (var j = lid; j < ${perGroup}u; j += ${FINISH_WG}u) {
    ${partOf}
    let k = j % ${chunks}u;
    let nb = f32(min(${chunk}u, ${l.planeSize}u - k * ${chunk}u));
    let nn = n + nb;
    let d = part[2u * p] - mu;
    mu = mu + d * nb / nn;
    q = q + part[2u * p + 1u] + d * d * n * nb / nn;
    n = nn;
  }
  cn[lid] = n;
  cm[lid] = mu;
  cq[lid] = q;
${treeReduce([], FINISH_WG, merge)}
  if (lid == 0u) {
    mean[grp] = cm[0];
    rstd[grp] = inverseSqrt(cq[0] / ${f(total)} + ${f(s.eps)});${update}
  }
}`,
  );
}

export interface SumsFinishSpec {
  layout: PlaneLayout;
  chunk: number;
  group: StatGroup;
  /** Floats per partial; output j receives the group sums of term j. */
  terms: number;
}

/** Stage 2 of plain sums: one output array per term, one value per group. */
function sumsFinishKernelGen(s: SumsFinishSpec): Kernel {
  const { layout: l, chunk, terms } = s;
  const groups = groupCount(l, s.group);
  const { perGroup, code: partOf } = partialOfGroup(l, chunk, s.group);
  const g = groupGrid(groups);
  const ids = Array.from({ length: terms }, (_, j) => j);
  return kernel(
    "plane_sums_finish",
    [ro("part"), ...ids.map((j) => rw(`out${j}`))],
    g.workgroups,
    `${ids.map((j) => `var<workgroup> sh${j}: array<f32, ${FINISH_WG}>;`).join("\n")}
@compute @workgroup_size(${FINISH_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let grp = ${g.index};
  if (grp >= ${groups}u) { return; }
${ids.map((j) => `  var a${j} = 0.0;`).join("\n")}
  for (var j = lid; j < ${perGroup}u; j += ${FINISH_WG}u) {
    ${partOf}
${ids.map((j) => `    a${j} += part[${terms}u * p + ${j}u];`).join("\n")}
  }
${ids.map((j) => `  sh${j}[lid] = a${j};`).join("\n")}
${treeReduce(ids.map((j) => `sh${j}`), FINISH_WG)}
  if (lid == 0u) { ${ids.map((j) => `out${j}[grp] = sh${j}[0];`).join(" ")} }
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const momentsPartialKernel = cached(momentsPartialKernelGen);
export const planeSumsPartialKernel = cached(planeSumsPartialKernelGen);
export const momentsFinishKernel = cached(momentsFinishKernelGen);
export const sumsFinishKernel = cached(sumsFinishKernelGen);
