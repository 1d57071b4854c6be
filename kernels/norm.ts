// Batch and instance normalisation's per-element passes over NCHW planes: the write-out
// y = (x − mean)·rstd·w + b with an optional fused ReLU (+ Dropout2d) or SiLU, the input gradient,
// and the first stage of the gradient's sums. The statistics are kernels/norm_stats.ts's
// two-stage reductions. When H·W is a multiple of 4, the elementwise passes load and store vec4
// (no vec4 straddles two planes), which roughly halves their time on a GPU.

import { type Binding, cached, f, grid1d, type Kernel, kernel, main1d, ro, rw } from "./common.ts";
import { dropThreshold, MIX32_WGSL } from "./dropout.ts";
import { siluWgsl } from "./activation.ts";
import {
  elementAlias,
  F32,
  type PlaneLayout,
  planeSumsPartialKernel,
  statOfPlane,
  useVec4,
  WG,
} from "./norm_stats.ts";

/** Stage 1 of the normalisation backward: per chunk, Σ g and Σ g·x̂ with x̂ = (x − mean)·rstd.
 * With a fused SiLU the affine weight and bias (when present) follow the statistics. */
function normGradSumsPartialKernelGen(
  l: PlaneLayout,
  chunk: number,
  group: "channel" | "plane",
  post?: NormPost,
  affine: { weight: boolean; bias: boolean } = { weight: false, bias: false },
): Kernel {
  // With a fused ReLU (+ Dropout2d) after the norm, g is rebuilt from the output's gradient gy
  // and the output y: y > 0 exactly where the unit was kept and the norm's output positive.
  // With a fused SiLU, from gy and the norm's output, recomputed from x.
  const silu = post?.act === "silu";
  // (The affine inputs are named aw, ab: `w` is the partial index in planeSumsPartialKernel.)
  const g = gradAtNorm(post, "e", silu ? normOutput(affine, "e", "mu", "rs", "c", "a") : "");
  return planeSumsPartialKernel({
    name: "norm_grad_sums_partial",
    layout: l,
    chunk,
    inputs: [
      { name: "x", elementwise: true },
      ...(post
        ? [{ name: "gy", elementwise: true }, ...(silu ? [] : [{ name: "y", elementwise: true }])]
        : [{ name: "g", elementwise: true }]),
      { name: "mean", elementwise: false },
      { name: "rstd", elementwise: false },
      ...(silu && affine.weight ? [{ name: "aw", elementwise: false }] : []),
      ...(silu && affine.bias ? [{ name: "ab", elementwise: false }] : []),
    ],
    setup: `  let st = ${statOfPlane(l, group, "plane")};
  let mu = mean[st];
  let rs = rstd[st];
  let c = plane % ${l.channels}u;`,
    helpers: silu ? siluWgsl("V") : "",
    terms: [g, `${g} * (x[e] - mu) * rs`],
  });
}

/** A ReLU or SiLU, then optionally (after a ReLU) a channel dropout (Dropout2d: one mask unit
 * per plane), fused into the normalisation's write-out and, in backward, into its gradient
 * passes. */
export interface NormPost {
  /** Drop probability in [0, 1); 0 or absent: the activation only. */
  dropP?: number;
  /** The activation; default ReLU. SiLU's gradient needs the norm's output, which the backward
   * kernels recompute from x, the statistics and the affine parameters (not with dropout). */
  act?: "relu" | "silu";
}

/** The factor kept outputs are scaled by: 1/(1 − p). */
export function postScale(post: NormPost): number {
  return 1 / (1 - (post.dropP ?? 0));
}

/** WGSL: the norm's output at index `k` from x and the statistic / channel expressions; the
 * affine parameters are the arrays `${prefix}w` and `${prefix}b`. */
function normOutput(
  affine: { weight: boolean; bias: boolean },
  k: string,
  mu: string,
  rs: string,
  c: string,
  prefix = "",
): string {
  const scaled = `(x[${k}] - ${mu}) * ${affine.weight ? `(${rs} * ${prefix}w[${c}])` : rs}`;
  return affine.bias ? `(${scaled} + ${prefix}b[${c}])` : `(${scaled})`;
}

/** WGSL: the gradient at the norm's output at index `k`: g[k], or rebuilt from the fused
 * post-activation's output gradient gy and output y (ReLU) or the norm's output `z` (SiLU). */
function gradAtNorm(post: NormPost | undefined, k: string, z: string): string {
  if (!post) return `g[${k}]`;
  if (post.act === "silu") return `(gy[${k}] * dsilu(${z}))`;
  return `select(V(0.0), gy[${k}] * ${f(postScale(post))}, y[${k}] > V(0.0))`;
}

export interface NormApplySpec {
  layout: PlaneLayout;
  group: "channel" | "plane";
  weight: boolean;
  bias: boolean;
  /** Fused ReLU (+ Dropout2d, whose seed is one more u32 binding after the inputs). */
  post?: NormPost;
}

/** The entry point with one thread per V of x: index `i`, its plane, channel `c` and
 * statistic `st`. */
function elementPrologue(l: PlaneLayout, group: "channel" | "plane") {
  const v = useVec4(l);
  const n = (l.batch * l.channels * l.planeSize) / (v ? 4 : 1);
  const g = grid1d(n);
  return {
    workgroups: g.workgroups,
    code: `${main1d(g.index, n, WG)}
  let plane = i / ${l.planeSize / (v ? 4 : 1)}u;
  let c = plane % ${l.channels}u;
  let st = ${statOfPlane(l, group, "plane")};`,
  };
}

/** Read-only f32 bindings: of V for the per-element arrays, of f32 for per-statistic ones. */
function inputBindings(names: string[], elementwise: string[]): Binding[] {
  return names.map((d) => ro(d, elementwise.includes(d) ? "V" : "f32", F32));
}

/** y = (x − mean)·rstd·w[c] + b[c]; inputs x, mean, rstd, then weight and bias if present. */
function normApplyKernelGen(s: NormApplySpec): Kernel {
  const l = s.layout;
  const pro = elementPrologue(l, s.group);
  const names = ["x", "mean", "rstd", ...(s.weight ? ["w"] : []), ...(s.bias ? ["b"] : [])];
  let expr = normOutput({ weight: s.weight, bias: s.bias }, "i", "mean[st]", "rstd[st]", "c");
  const drop = (s.post?.dropP ?? 0) > 0;
  const silu = s.post?.act === "silu";
  if (silu && drop) throw new Error("norm apply: dropout after a fused SiLU is not supported");
  if (silu) expr = `silu(${expr})`;
  else if (s.post) expr = `max(${expr}, V(0.0))`;
  if (drop) {
    // The mask of dropout2d: unit = plane index (b·C + c), same hash and threshold.
    expr = `select(V(0.0), ${expr} * ${f(postScale(s.post!))}, unit_hash(seed[0], plane) >= ${
      dropThreshold(s.post!.dropP!)
    }u)`;
  }
  const bindings = [
    ...inputBindings(names, ["x"]),
    ...(drop ? [ro("seed", "u32", { count: 1 })] : []),
    rw("y", "V", F32),
  ];
  return kernel(
    silu
      ? "norm_apply_silu"
      : s.post
      ? (drop ? "norm_apply_relu_dropout2d" : "norm_apply_relu")
      : "norm_apply",
    bindings,
    pro.workgroups,
    `${elementAlias(useVec4(l))}
${drop ? MIX32_WGSL : ""}
${silu ? siluWgsl("V") : ""}
${pro.code}
  y[i] = ${expr};
}`,
  );
}

export interface NormGradSpec {
  layout: PlaneLayout;
  group: "channel" | "plane";
  weight: boolean;
  /** true: the statistics came from this batch (training, instance norm), so dx has the
   * mean-and-variance terms and needs the sums Σg, Σg·x̂; false: fixed statistics (eval). */
  batchStats: boolean;
  /** A fused ReLU (+ Dropout2d) followed the norm: the input g is replaced by gy and y; a
   * fused SiLU: by gy, with x and mean bound in either case, and the bias when `bias`. */
  post?: NormPost;
  bias?: boolean;
  /** Add into what dx holds (a gradient summed in the write-out: autograd's `into`). */
  accumulate?: boolean;
}

/** dx of the normalisation. batchStats: inputs x, g, mean, rstd, sg, sgx, [w];
 * dx = w·rstd·(g − Σg/N − x̂·Σg·x̂/N). Fixed statistics: inputs g, rstd, [w]; dx = g·w·rstd.
 * A fused post-activation replaces g by (gy, y) for ReLU, by gy for SiLU, whose fixed-statistics
 * form also reads x and mean; SiLU adds the bias after w when the norm has one. */
function normGradKernelGen(s: NormGradSpec): Kernel {
  const l = s.layout;
  const pro = elementPrologue(l, s.group);
  const count = s.group === "channel" ? l.batch * l.planeSize : l.planeSize;
  const silu = s.post?.act === "silu";
  const gIn = s.post ? (silu ? ["gy"] : ["gy", "y"]) : ["g"];
  const names = s.batchStats
    ? ["x", ...gIn, "mean", "rstd", "sg", "sgx"]
    : silu
    ? ["x", ...gIn, "mean", "rstd"]
    : [...gIn, "rstd"];
  if (s.weight) names.push("w");
  if (silu && s.bias) names.push("b");
  const affine = { weight: s.weight, bias: silu && !!s.bias };
  const g = gradAtNorm(s.post, "i", normOutput(affine, "i", "mean[st]", "rstd[st]", "c"));
  const scale = s.weight ? "w[c] * rstd[st]" : "rstd[st]";
  // dx = scale·g − scale·Σg/N − (x − mean)·(scale·rstd·Σg·x̂/N): per-statistic factors first,
  // then one fused expression per element.
  const store = (v: string) => `dx[i] = ${s.accumulate ? `dx[i] + (${v})` : v};`;
  const body = s.batchStats
    ? `  let k = ${scale};
  let kg = k * sg[st] * ${f(1 / count)};
  let kx = k * rstd[st] * sgx[st] * ${f(1 / count)};
  ${store(`k * ${g} - kg - (x[i] - mean[st]) * kx`)}`
    : `  ${store(`${g} * (${scale})`)}`;
  const k = kernel(
    "norm_grad",
    [...inputBindings(names, ["x", "g", "gy", "y"]), rw("dx", "V", F32)],
    pro.workgroups,
    `${elementAlias(useVec4(l))}
${silu ? siluWgsl("V") : ""}
${pro.code}
${body}
}`,
  );
  // Adding into dx reads it as well as writing it.
  const dxBytes = 4 * l.batch * l.channels * l.planeSize;
  return s.accumulate ? { ...k, touched: [...names.map(() => null), 2 * dxBytes] } : k;
}

// Generated once per distinct spec (see cached in common.ts).
export const normGradSumsPartialKernel = cached(normGradSumsPartialKernelGen);
export const normApplyKernel = cached(normApplyKernelGen);
export const normGradKernel = cached(normGradKernelGen);
