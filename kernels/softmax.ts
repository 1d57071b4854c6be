// Softmax and log-softmax along one axis, forward and backward. The tensor is viewed as
// [outer, n, inner] with the softmax over n. Contiguous rows (inner = 1) get one workgroup per
// row with a shared-memory tree; strided axes (the channel axis of [B, C, H, W]) get one thread
// per (outer, inner) pair, whose loads over n are coalesced across neighbouring threads; when
// inner is a multiple of 4 a thread takes 4 neighbouring pairs as one vec4.

import { cached, groupGrid, type Kernel, kernel, kernel1d, ro, rw } from "./common.ts";

export interface SoftmaxSpec {
  outer: number;
  /** Length of the softmax axis. */
  n: number;
  /** Product of the dimensions after the axis (1 for the last axis). */
  inner: number;
  /** log-softmax instead of softmax. */
  log?: boolean;
}

const NEG_MAX = "-3.4028235e38";

/** The element type F of the bindings: f32, or vec4<f32> when a thread takes 4 lanes. */
function lanes(w: 1 | 4): string {
  return w === 4 ? "alias F = vec4<f32>;" : "alias F = f32;";
}

/** Threads per row: a power of two, enough for short rows without idling many lanes. */
function rowThreads(n: number): number {
  let t = 32;
  while (t < n && t < 256) t *= 2;
  return t;
}

/** Tree reduction of `red` (workgroup array of `wg` floats) into red[0]; `op` combines two. */
function tree(wg: number, op: (a: string, b: string) => string): string {
  return `  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = ${op("red[lid]", "red[lid + s]")}; }
    workgroupBarrier();
  }`;
}

/** Declarations of the strided (inner > 1) kernels: the lane type and the column stride S. */
function columnDecls(w: 1 | 4, inner: number): string {
  return `${lanes(w)}\nconst S = ${inner / w}u;`;
}

/** WGSL: the first element `b` of thread i's column (of n elements S apart). */
function columnStart(n: number): string {
  return `let b = (i / S) * ${n}u * S + i % S;`;
}

/** y = softmax(x) or log_softmax(x). Bindings: x → y. */
function softmaxKernelGen(spec: SoftmaxSpec): Kernel {
  const { outer, n, inner, log = false } = spec;
  const name = log ? "log_softmax" : "softmax";
  const bindings = [ro("x", "F", { dtype: "f32" }), rw("y", "F", { dtype: "f32" })];
  if (inner === 1) {
    const wg = rowThreads(n);
    const g = groupGrid(outer);
    const write = log ? "x[b + i] - mx - log(tot)" : "exp(x[b + i] - mx) * inv";
    return kernel(
      name,
      bindings,
      g.workgroups,
      `${lanes(1)}
var<workgroup> red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${g.index};
  if (row >= ${outer}u) { return; }
  let b = row * ${n}u;
  var m: f32 = ${NEG_MAX};
  for (var i = lid; i < ${n}u; i += ${wg}u) { m = max(m, x[b + i]); }
  red[lid] = m;
  workgroupBarrier();
${tree(wg, (a, c) => `max(${a}, ${c})`)}
  let mx = red[0];
  workgroupBarrier();
  var acc: f32 = 0.0;
  for (var i = lid; i < ${n}u; i += ${wg}u) { acc += exp(x[b + i] - mx); }
  red[lid] = acc;
  workgroupBarrier();
${tree(wg, (a, c) => `${a} + ${c}`)}
  let tot = red[0];
  let inv = 1.0 / tot;
  for (var i = lid; i < ${n}u; i += ${wg}u) { y[b + i] = ${write}; }
}`,
    );
  }
  const W = inner % 4 === 0 ? 4 : 1;
  const write = log ? "x[b + k * S] - mx - log(tot)" : "exp(x[b + k * S] - mx) * inv";
  return kernel1d(
    name,
    bindings,
    (outer * inner) / W,
    `${columnStart(n)}
  var mx = F(${NEG_MAX});
  for (var k = 0u; k < ${n}u; k++) { mx = max(mx, x[b + k * S]); }
  var tot = F(0.0);
  for (var k = 0u; k < ${n}u; k++) { tot += exp(x[b + k * S] - mx); }
  let inv = F(1.0) / tot;
  for (var k = 0u; k < ${n}u; k++) { y[b + k * S] = ${write}; }`,
    columnDecls(W, inner),
  );
}

/** Gradient through softmax / log-softmax from the output y and its gradient g:
 * softmax: dx = y ⊙ (g − Σ g⊙y); log-softmax: dx = g − exp(y) ⊙ Σ g. Bindings: y, g → dx. */
function softmaxBackwardKernelGen(spec: SoftmaxSpec): Kernel {
  const { outer, n, inner, log = false } = spec;
  const name = log ? "log_softmax_backward" : "softmax_backward";
  const bindings = [
    ro("y", "F", { dtype: "f32" }),
    ro("g", "F", { dtype: "f32" }),
    rw("dx", "F", { dtype: "f32" }),
  ];
  const term = (j: string) => log ? `g[${j}]` : `g[${j}] * y[${j}]`;
  const out = (j: string) => log ? `g[${j}] - exp(y[${j}]) * tot` : `y[${j}] * (g[${j}] - tot)`;
  if (inner === 1) {
    const wg = rowThreads(n);
    const gg = groupGrid(outer);
    return kernel(
      name,
      bindings,
      gg.workgroups,
      `${lanes(1)}
var<workgroup> red: array<f32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${gg.index};
  if (row >= ${outer}u) { return; }
  let b = row * ${n}u;
  var acc: f32 = 0.0;
  for (var i = lid; i < ${n}u; i += ${wg}u) { acc += ${term("b + i")}; }
  red[lid] = acc;
  workgroupBarrier();
${tree(wg, (a, c) => `${a} + ${c}`)}
  let tot = red[0];
  for (var i = lid; i < ${n}u; i += ${wg}u) { dx[b + i] = ${out("b + i")}; }
}`,
    );
  }
  const W = inner % 4 === 0 ? 4 : 1;
  return kernel1d(
    name,
    bindings,
    (outer * inner) / W,
    `${columnStart(n)}
  var tot = F(0.0);
  for (var k = 0u; k < ${n}u; k++) { tot += ${term("b + k * S")}; }
  for (var k = 0u; k < ${n}u; k++) { dx[b + k * S] = ${out("b + k * S")}; }`,
    columnDecls(W, inner),
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const softmaxKernel = cached(softmaxKernelGen);
export const softmaxBackwardKernel = cached(softmaxBackwardKernelGen);
