// Activation kernels: pointwise functions with their derivatives as WGSL helpers (`act`,
// `act_grad`), and PReLU, whose slope is indexed by channel. Layout NCHW.

import { cached, f, type Kernel, kernel1d, ro, rw } from "./common.ts";

export type Activation =
  | { op: "silu" }
  | { op: "gelu" }
  | { op: "erf" }
  | { op: "leakyRelu"; slope: number }
  | { op: "hardSigmoid" };

// erf(x) for |x| < 1: the Maclaurin series x·Σ (-1)^n (2/√π) x^{2n} / (n!(2n+1)), 10 terms
// (truncation error 1.4e-8 at |x| = 1).
const ERF_SERIES = Array.from({ length: 10 }, (_, n) => {
  let fact = 1;
  for (let k = 2; k <= n; k++) fact *= k;
  return ((-1) ** n * 2) / (Math.sqrt(Math.PI) * fact * (2 * n + 1));
});

// erfc(x) = exp(-x²)·R(t), t = 1/(1 + x/2), for 1 ≤ x ≤ 6: R is a degree-7 polynomial fitted
// here by least squares on Chebyshev points (max error of erf 1.5e-9 in float64 and 1.3e-7
// when evaluated in f32); above 6, erf is 1 in f32.
const ERFC_FIT = [
  -8.92741949e-5,
  0.283900882,
  0.266367381,
  0.323582646,
  -0.0515252085,
  0.496824644,
  -0.424637653,
  0.105517202,
];

function horner(coeffs: number[], v: string): string {
  let s = f(coeffs[coeffs.length - 1]);
  for (let k = coeffs.length - 2; k >= 0; k--) s = `(${s} * ${v} + ${f(coeffs[k])})`;
  return s;
}

/** WGSL `fn erf_f32(x: f32) -> f32`, |error| < 1e-6 over all of f32. */
export const ERF_WGSL = `fn erf_f32(x: f32) -> f32 {
  let z = abs(x);
  let z2 = z * z;
  let series = z * ${horner(ERF_SERIES, "z2")};
  let zc = min(z, 6.0);
  let t = 1.0 / (1.0 + 0.5 * zc);
  let tail = 1.0 - exp(-zc * zc) * ${horner(ERFC_FIT, "t")};
  return sign(x) * select(tail, series, z < 1.0);
}`;

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** WGSL `silu(z)` and its derivative `dsilu(z)` for values of type `t` (f32, or a kernel's
 * alias V of f32 or vec4<f32>). */
export function siluWgsl(t: string): string {
  return `fn silu(z: ${t}) -> ${t} { return z / (${t}(1.0) + exp(-z)); }
fn dsilu(z: ${t}) -> ${t} {
  let s = ${t}(1.0) / (${t}(1.0) + exp(-z));
  return s * (${t}(1.0) + z * (${t}(1.0) - s));
}`;
}

/** WGSL `act(x)` and `act_grad(x)` (dy/dx) for an activation. */
function helpers(a: Activation): string {
  switch (a.op) {
    case "silu":
      return `${siluWgsl("f32")}
fn act(x: f32) -> f32 { return silu(x); }
fn act_grad(x: f32) -> f32 { return dsilu(x); }`;
    case "gelu":
      return `${ERF_WGSL}
fn act(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_f32(x * ${f(SQRT1_2)})); }
fn act_grad(x: f32) -> f32 {
  return 0.5 * (1.0 + erf_f32(x * ${f(SQRT1_2)})) + x * ${f(INV_SQRT_2PI)} * exp(-0.5 * x * x);
}`;
    case "erf":
      return `${ERF_WGSL}
fn act(x: f32) -> f32 { return erf_f32(x); }
fn act_grad(x: f32) -> f32 { return ${f(2 / Math.sqrt(Math.PI))} * exp(-x * x); }`;
    case "leakyRelu":
      return `fn act(x: f32) -> f32 { return select(${f(a.slope)} * x, x, x > 0.0); }
fn act_grad(x: f32) -> f32 { return select(${f(a.slope)}, 1.0, x > 0.0); }`;
    case "hardSigmoid":
      // PyTorch: relu6(x + 3) / 6; the derivative is 1/6 strictly inside (-3, 3).
      return `fn act(x: f32) -> f32 { return clamp(x / 6.0 + 0.5, 0.0, 1.0); }
fn act_grad(x: f32) -> f32 { return select(0.0, ${f(1 / 6)}, x > -3.0 && x < 3.0); }`;
  }
}

/** y = act(x) over n elements. */
function activationKernelGen(a: Activation, n: number): Kernel {
  return kernel1d(a.op, [ro("x"), rw("y")], n, "y[i] = act(x[i]);", helpers(a));
}

/** dx = g · act'(x) over n elements. */
function activationGradKernelGen(a: Activation, n: number): Kernel {
  const bindings = [ro("x"), ro("g"), rw("dx")];
  return kernel1d(`${a.op}_grad`, bindings, n, "dx[i] = g[i] * act_grad(x[i]);", helpers(a));
}

export interface PreluSpec {
  /** Elements of x. */
  n: number;
  /** Channels (dimension 1) and the elements per channel plane (H·W, or 1 for [B, C]). */
  channels: number;
  planeSize: number;
  /** One slope for all channels (shape [1]) or one per channel (shape [C]). */
  shared: boolean;
}

function slopeIndex(s: PreluSpec): string {
  return s.shared || s.channels === 1 ? "0u" : `(i / ${s.planeSize}u) % ${s.channels}u`;
}

/** y = x > 0 ? x : a·x. */
function preluKernelGen(s: PreluSpec): Kernel {
  return kernel1d(
    "prelu",
    [ro("x"), ro("slope"), rw("y")],
    s.n,
    `let v = x[i];
  y[i] = select(slope[${slopeIndex(s)}] * v, v, v > 0.0);`,
  );
}

/** dx = x > 0 ? g : a·g. */
function preluGradKernelGen(s: PreluSpec): Kernel {
  return kernel1d(
    "prelu_grad",
    [ro("x"), ro("slope"), ro("g"), rw("dx")],
    s.n,
    `let gi = g[i];
  dx[i] = select(slope[${slopeIndex(s)}] * gi, gi, x[i] > 0.0);`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const activationKernel = cached(activationKernelGen);
export const activationGradKernel = cached(activationGradKernelGen);
export const preluKernel = cached(preluKernelGen);
export const preluGradKernel = cached(preluGradKernelGen);
