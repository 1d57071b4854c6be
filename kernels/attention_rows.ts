// Row passes of attention's backward. D = rowsum(dO ⊙ O) for both forms (the flash dQ kernel
// computes it itself; this one serves where q needs no gradient, and the GEMM form). And the two
// passes over a materialised score matrix that the GEMM form needs between its products
// (engine/ops/attention_gemm.ts): the row softmax of scale·S written over S, and the
// softmax gradient dS = scale·P ⊙ (dP − D) written over dP, with D = rowsum(dO ⊙ O) computed
// once per query row beforehand (so this pass is elementwise, not a second row reduction).
// Rows are contiguous, `n` floats each; vec4 lanes when n is a multiple of 4.

import { cached, f, groupGrid, type Kernel, kernel, kernel1d, ro, rw } from "./common.ts";

export interface ScoreRowsSpec {
  rows: number;
  /** Row length (keys). */
  n: number;
  /** Multiplies the scores before the softmax (and the gradient after it). */
  scale: number;
}

const NEG_MAX = "-3.4028235e38";

/** Threads per row: about 4 vec4 each, 32 to 256. */
function rowThreads(lanes: number): number {
  let t = 32;
  while (t * 4 < lanes && t < 256) t *= 2;
  return t;
}

/** s ← softmax(scale·s) per row, in place: one workgroup per row; each thread keeps a running
 * max and sum over its lanes (one read), the pairs merge in a tree, then one write pass. */
function softmaxRowsKernelGen(spec: ScoreRowsSpec): Kernel {
  const { rows, n, scale } = spec;
  const W = n % 4 === 0 ? 4 : 1;
  const lanes = n / W;
  const wg = rowThreads(lanes);
  const g = groupGrid(rows);
  const F = W === 4 ? "vec4<f32>" : "f32";
  const hmax = W === 4 ? "max(max(x.x, x.y), max(x.z, x.w))" : "x";
  const hsum = W === 4 ? "dot(e, vec4<f32>(1.0))" : "e";
  return kernel(
    "attention_softmax_rows",
    [rw("s", F, { dtype: "f32" })],
    g.workgroups,
    `var<workgroup> rm: array<f32, ${wg}>;
var<workgroup> rl: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${g.index};
  if (row >= ${rows}u) { return; }
  let b = row * ${lanes}u;
  var m: f32 = ${NEG_MAX};
  var l: f32 = 0.0;
  for (var i = lid; i < ${lanes}u; i += ${wg}u) {
    let x = s[b + i] * ${f(scale)};
    let mx = max(m, ${hmax});
    let e = exp(x - ${F}(mx));
    l = l * exp(m - mx) + ${hsum};
    m = mx;
  }
  rm[lid] = m;
  rl[lid] = l;
  workgroupBarrier();
  for (var h = ${wg / 2}u; h > 0u; h >>= 1u) {
    if (lid < h) {
      let ma = rm[lid];
      let mb = rm[lid + h];
      let mx = max(ma, mb);
      rl[lid] = rl[lid] * exp(ma - mx) + rl[lid + h] * exp(mb - mx);
      rm[lid] = mx;
    }
    workgroupBarrier();
  }
  let mx = rm[0];
  let inv = 1.0 / rl[0];
  for (var i = lid; i < ${lanes}u; i += ${wg}u) {
    s[b + i] = exp(s[b + i] * ${f(scale)} - ${F}(mx)) * inv;
  }
}`,
  );
}

/** ds ← scale·p ⊙ (ds − d[row]) elementwise (ds holds dP on entry). Bindings: p, d → ds. */
function softmaxGradRowsKernelGen(spec: ScoreRowsSpec): Kernel {
  const { rows, n, scale } = spec;
  const W = n % 4 === 0 ? 4 : 1;
  const F = W === 4 ? "vec4<f32>" : "f32";
  const lanes = n / W;
  return kernel1d(
    "attention_softmax_grad_rows",
    [ro("p", F, { dtype: "f32" }), ro("d"), rw("ds", F, { dtype: "f32" })],
    rows * lanes,
    `ds[i] = ${f(scale)} * p[i] * (ds[i] - ${F}(d[i / ${lanes}u]));`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const softmaxRowsKernel = cached(softmaxRowsKernelGen);
export const softmaxGradRowsKernel = cached(softmaxGradRowsKernelGen);

/** d[row] = Σ_c o[row, c]·g[row, c] over rows of `n` (D of the softmax gradient, from the output
 * and its gradient). Bindings: o, g → d. */
function rowDotKernelGen(spec: { rows: number; n: number }): Kernel {
  const { rows, n } = spec;
  const W = n % 4 === 0 ? 4 : 1;
  const F = W === 4 ? "vec4<f32>" : "f32";
  const lanes = n / W;
  const term = W === 4 ? "dot(o[b + c], g[b + c])" : "o[b + c] * g[b + c]";
  return kernel1d(
    "attention_row_dot",
    [ro("o", F, { dtype: "f32" }), ro("g", F, { dtype: "f32" }), rw("d")],
    rows,
    `let b = i * ${lanes}u;
  var acc: f32 = 0.0;
  for (var c = 0u; c < ${lanes}u; c++) { acc += ${term}; }
  d[i] = acc;`,
  );
}

export const rowDotKernel = cached(rowDotKernelGen);
