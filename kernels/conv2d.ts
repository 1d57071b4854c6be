// Convolution geometry (NCHW, weights [Co, Ci/groups, kh, kw] as PyTorch), the fused epilogue
// (bias + activation) shared by every convolution kernel, and the eval-mode BatchNorm fold.
// Which kernel runs a convolution is kernels/conv_plan.ts's choice.

import { type Binding, cached, f, type Kernel, kernel1d, ro, rw } from "./common.ts";

/** Activation fused into a convolution's write-out. PReLU reads a slope tensor (1 or Co). */
export type ConvActivation = "none" | "relu" | "silu" | "sigmoid" | "prelu";

export interface ConvGeometry {
  batch: number;
  /** Input channels, height, width. */
  ci: number;
  h: number;
  w: number;
  /** Output channels, height, width. */
  co: number;
  ho: number;
  wo: number;
  kh: number;
  kw: number;
  strideY: number;
  strideX: number;
  padY: number;
  padX: number;
  dilY: number;
  dilX: number;
  groups: number;
}

export type Pair = number | readonly [number, number];

export function pair(v: Pair | undefined, dflt: number): [number, number] {
  if (v === undefined) return [dflt, dflt];
  return typeof v === "number" ? [v, v] : [v[0], v[1]];
}

/** PyTorch's output size of a convolution along one axis. */
export function convOutSize(n: number, k: number, s: number, p: number, d: number): number {
  return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;
}

export interface ConvOptionsSpec {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

/** Geometry of conv2d(x [B, Ci, H, W], w [Co, Ci/groups, kh, kw]); throws on a mismatch. */
export function convGeometry(
  x: readonly number[],
  w: readonly number[],
  o: ConvOptionsSpec = {},
): ConvGeometry {
  if (x.length !== 4 || w.length !== 4) {
    throw new Error(`conv2d: input [${x}] and weight [${w}] must both be 4-D (NCHW)`);
  }
  const [strideY, strideX] = pair(o.stride, 1);
  const [padY, padX] = pair(o.padding, 0);
  const [dilY, dilX] = pair(o.dilation, 1);
  const groups = o.groups ?? 1;
  const [batch, ci, h, wd] = x;
  const [co, cig, kh, kw] = w;
  if (ci % groups || co % groups || cig * groups !== ci) {
    throw new Error(
      `conv2d: input [${x}] and weight [${w}] do not match groups ${groups} ` +
        `(need Ci = groups·w.shape[1] and Co divisible by groups)`,
    );
  }
  if (Math.min(strideY, strideX, dilY, dilX) < 1 || Math.min(padY, padX) < 0) {
    throw new Error("conv2d: stride and dilation must be ≥ 1 and padding ≥ 0");
  }
  const ho = convOutSize(h, kh, strideY, padY, dilY);
  const wo = convOutSize(wd, kw, strideX, padX, dilX);
  if (ho < 1 || wo < 1) throw new Error(`conv2d: input [${x}] too small for weight [${w}]`);
  return {
    batch,
    ci,
    h,
    w: wd,
    co,
    ho,
    wo,
    kh,
    kw,
    strideY,
    strideX,
    padY,
    padX,
    dilY,
    dilX,
    groups,
  };
}

export interface Epilogue {
  bias: boolean;
  activation: ConvActivation;
  /** Also write the pre-activation value (the backward of silu and prelu needs it). */
  savePre: boolean;
  /** PReLU: number of slopes (1: shared, else one per output channel). */
  slopes?: number;
  /** Add into what `out` holds instead of overwriting it (a gradient summed in the write-out:
   * autograd's `into`); only without bias, activation and saved pre-activation. */
  accumulate?: boolean;
}

export const NO_EPILOGUE: Epilogue = { bias: false, activation: "none", savePre: false };

/** Extra input bindings the epilogue reads, in binding order after x and w. */
export function epilogueInputs(e: Epilogue): string[] {
  const names: string[] = [];
  if (e.bias) names.push("bias");
  if (e.activation === "prelu") names.push("slope");
  return names;
}

/** The epilogue's bindings: its inputs (bias, slope: f32 arrays), then out and, if saved, pre as
 * arrays of `t`. */
export function epilogueBindings(e: Epilogue, t = "f32"): Binding[] {
  return [
    ...epilogueInputs(e).map((n) => ro(n)),
    rw("out", t),
    ...(e.savePre ? [rw("pre", t)] : []),
  ];
}

/** The bindings of a convolution: the input, wt, then bias/slope, then out and (if saved) pre.
 * The input, out and pre may be declared as vec4 arrays (vectorised loads / stores). */
export function convBindings(
  e: Epilogue,
  inName: string,
  vec: { in?: boolean; out?: boolean; w?: boolean } = {},
): Binding[] {
  const arr = (v?: boolean) => (v ? "vec4<f32>" : "f32");
  return [ro(inName, arr(vec.in)), ro("wt", arr(vec.w)), ...epilogueBindings(e, arr(vec.out))];
}

/** WGSL statements storing accumulator `v` (f32, or vec4 when `vec4`) for output channel `ch`
 * at index `idx` of out (and pre). */
export function epilogueStore(
  e: Epilogue,
  v: string,
  ch: string,
  idx: string,
  vec4 = false,
): string {
  if (e.accumulate) {
    if (e.bias || e.activation !== "none" || e.savePre) {
      throw new Error("epilogueStore: accumulate takes no bias, activation or pre-activation");
    }
    return `out[${idx}] = out[${idx}] + ${v};`;
  }
  const z = e.bias ? `(${v} + bias[${ch}])` : v;
  const lines = [`{ let z = ${z};`];
  if (e.savePre) lines.push(`pre[${idx}] = z;`);
  lines.push(`out[${idx}] = ${activationExpr(e, "z", ch, vec4 ? "vec4<f32>(0.0)" : "0.0")}; }`);
  return lines.join(" ");
}

function activationExpr(e: Epilogue, z: string, ch: string, zero: string): string {
  switch (e.activation) {
    case "none":
      return z;
    case "relu":
      return `max(${z}, ${zero})`;
    case "silu":
      return `${z} / (1.0 + exp(-${z}))`;
    case "sigmoid":
      return `1.0 / (1.0 + exp(-${z}))`;
    case "prelu":
      return `select(slope[${(e.slopes ?? 1) > 1 ? ch : "0u"}] * ${z}, ${z}, ${z} > ${zero})`;
  }
}

export interface FoldBatchNormSpec {
  co: number;
  /** Consecutive weights of one output channel (Ci/groups·kh·kw; kh·kw for a transposed
   * conv's [Ci, Co, kh, kw], whose channel blocks repeat `outer` = Ci times). */
  perChannel: number;
  outer?: number;
  eps: number;
  hasBias: boolean;
  affine: boolean;
}

/** Eval-mode BatchNorm folded into the preceding conv: with s = γ/√(var+ε),
 * w' = w·s (per output channel) and b' = (b − mean)·s + β. Inputs: w, [b], mean, var, [γ, β];
 * outputs w', b'. One thread per weight; the first weight of a channel also writes b'. */
function foldBatchNormKernelGen(s: FoldBatchNormSpec): Kernel {
  const n = (s.outer ?? 1) * s.co * s.perChannel;
  const inputs = [
    "w",
    ...(s.hasBias ? ["b"] : []),
    "mean",
    "vars",
    ...(s.affine ? ["gamma", "beta"] : []),
  ];
  const bindings = [...inputs.map((v) => ro(v)), rw("w2"), rw("b2")];
  return kernel1d(
    "fold_batchnorm",
    bindings,
    n,
    `let c = (i / ${s.perChannel}u) % ${s.co}u;
  let sc = ${s.affine ? "gamma[c] * " : ""}inverseSqrt(vars[c] + ${f(s.eps)});
  w2[i] = w[i] * sc;
  if (i < ${s.co * s.perChannel}u && i % ${s.perChannel}u == 0u) {
    b2[c] = (${s.hasBias ? "b[c]" : "0.0"} - mean[c]) * sc${s.affine ? " + beta[c]" : ""};
  }`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const foldBatchNormKernel = cached(foldBatchNormKernelGen);
