// Layer normalisation, one thread per row: the channel vector of one pixel of NCHW (layerNorm2d,
// stride H·W between channels, so neighbouring threads read neighbouring pixels), or a contiguous
// row (kept for layouts the cooperative token kernels of layer_norm_tokens.ts do not take). Rows are short (C ≤ a few
// hundred), so each thread keeps its row in cache over its two or three passes.

import { cached, f, grid1d, type Kernel, kernel, main1d, ro, rw } from "./common.ts";

export interface RowLayout {
  /** Number of rows and the length of each (the normalised dimension). */
  rows: number;
  len: number;
  /** Pixels per image for NCHW rows (layerNorm2d); absent for a contiguous last dimension. */
  planeSize?: number;
}

/** WGSL: offset of row r's first element and the stride between its elements. */
function rowAddress(l: RowLayout): { base: string; stride: string } {
  if (l.planeSize === undefined) return { base: `r * ${l.len}u`, stride: "1u" };
  const hw = l.planeSize;
  return { base: `(r / ${hw}u) * ${l.len * hw}u + r % ${hw}u`, stride: `${hw}u` };
}

/** A one-thread-per-row kernel: f32 inputs `ins` then outputs `outs`, thread `r` past the rows
 * returned, `base` its row's first element; `body` follows and closes the function. */
function rowKernel(
  name: string,
  ins: string[],
  outs: string[],
  l: RowLayout,
  body: string,
): Kernel {
  const g = grid1d(l.rows, 64);
  return kernel(
    name,
    [...ins.map((d) => ro(d)), ...outs.map((d) => rw(d))],
    g.workgroups,
    `${main1d(g.index, l.rows, 64, "r")}
  let base = ${rowAddress(l).base};
${body}`,
  );
}

export interface RowNormSpec {
  layout: RowLayout;
  eps: number;
  weight: boolean;
  bias: boolean;
}

/** y = (x − mean)·rstd·w + b per row; inputs x, [w], [b]; outputs y, mean, rstd ([rows]). */
function rowNormKernelGen(s: RowNormSpec): Kernel {
  const l = s.layout;
  const { stride } = rowAddress(l);
  const ins = ["x", ...(s.weight ? ["w"] : []), ...(s.bias ? ["b"] : [])];
  let expr = "(x[e] - mu) * rs";
  if (s.weight) expr = `${expr} * w[j]`;
  if (s.bias) expr = `${expr} + b[j]`;
  const outs = ["y", "mean", "rstd"];
  return rowKernel(
    "layer_norm",
    ins,
    outs,
    l,
    `  var s = 0.0;
  for (var j = 0u; j < ${l.len}u; j++) { s += x[base + j * ${stride}]; }
  let mu = s / ${f(l.len)};
  var q = 0.0;
  for (var j = 0u; j < ${l.len}u; j++) {
    let d = x[base + j * ${stride}] - mu;
    q += d * d;
  }
  let rs = inverseSqrt(q / ${f(l.len)} + ${f(s.eps)});
  for (var j = 0u; j < ${l.len}u; j++) {
    let e = base + j * ${stride};
    y[e] = ${expr};
  }
  mean[r] = mu;
  rstd[r] = rs;
}`,
  );
}

export interface RowNormGradSpec {
  layout: RowLayout;
  weight: boolean;
  /** Write dx (x needs a gradient). */
  dx: boolean;
  /** Write g·x̂ (for the weight gradient, summed over rows by the caller). */
  gxhat: boolean;
}

/** dx = rstd·(gw − mean(gw) − x̂·mean(gw·x̂)) per row, gw = g·w, and/or g·x̂. Inputs x, g, mean,
 * rstd, then w when dx is written with a weight; outputs dx and/or gxhat. */
function rowNormGradKernelGen(s: RowNormGradSpec): Kernel {
  if (!s.dx && !s.gxhat) throw new Error("rowNormGradKernel: nothing to write");
  const l = s.layout;
  const { stride } = rowAddress(l);
  const useW = s.dx && s.weight;
  const ins = ["x", "g", "mean", "rstd", ...(useW ? ["w"] : [])];
  const outs = [...(s.dx ? ["dx"] : []), ...(s.gxhat ? ["gxhat"] : [])];
  const gw = useW ? "g[e] * w[j]" : "g[e]";
  const sums = s.dx
    ? `  var a = 0.0;
  var b = 0.0;
  for (var j = 0u; j < ${l.len}u; j++) {
    let e = base + j * ${stride};
    let gwv = ${gw};
    a += gwv;
    b += gwv * (x[e] - mu) * rs;
  }
  a = a / ${f(l.len)};
  b = b / ${f(l.len)};`
    : "";
  const writes = [
    ...(s.dx ? [`dx[e] = rs * (${gw} - a - xh * b);`] : []),
    ...(s.gxhat ? ["gxhat[e] = g[e] * xh;"] : []),
  ].join("\n    ");
  return rowKernel(
    "layer_norm_grad",
    ins,
    outs,
    l,
    `  let mu = mean[r];
  let rs = rstd[r];
${sums}
  for (var j = 0u; j < ${l.len}u; j++) {
    let e = base + j * ${stride};
    let xh = (x[e] - mu) * rs;
    ${writes}
  }
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const rowNormKernel = cached(rowNormKernelGen);
export const rowNormGradKernel = cached(rowNormGradKernelGen);
