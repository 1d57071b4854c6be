// The change-detection training loss in one pass over the logits:
//   L = Σ_valid w_y·ce / Σ_valid w_y  +  λ · mean((student − teacher)²)
// with ce the binary cross-entropy with logits (1 channel) or the softmax cross-entropy
// (2 channels); labels are 0 or 1, and any other value (255) marks an ignored pixel. The same pass writes dL/dlogits, already
// scaled for both means, so backward is one multiply by the incoming scalar gradient.
//
// The CE mean needs Σ w_y over the whole batch before any gradient can be scaled, so:
//   1. count:  per (image, chunk) partial Σ w_y, from the labels alone (skipped without grad);
//   2. total:  one workgroup sums them into 1 / Σ w_y;
//   3. main:   per (image, chunk) partial (Σ w·ce, Σ w, Σ sq) and the gradient;
//   4. finish: one workgroup turns the partials into the loss and the per-image losses.
// Two-stage sums keep it deterministic (WGSL has no float atomics). When H·W is a multiple of 4
// every load and store moves a vec4 (4 pixels): F and U below are vec4<f32> / vec4<u32> then, f32
// and u32 otherwise, and the same WGSL text serves both.
//
// With OHEM (mmseg's OHEMPixelSampler + CrossEntropyLoss, kernels/ohem.ts finds the threshold)
// a valid pixel's weight is w_y·[p < threshold], and the CE term is Σ w·ce / (B·H·W): mmseg
// averages over every pixel, not over the kept ones. Stages 1–2 are then not needed (the
// normaliser is a constant); the main stage reads p and the threshold from the OHEM kernels, so
// the keep decision uses the very values the threshold was chosen from.

import { cached, f, groupGrid, header, type Kernel, kernel1d, ro, rw } from "./common.ts";

export interface CdLossSpec {
  batch: number;
  /** 1: sigmoid / binary CE on one logit; 2: softmax CE over two logits. */
  channels: 1 | 2;
  /** Pixels per image (H·W). */
  pixels: number;
  /** Weight of the distillation MSE (0: no teacher is read). */
  lambda: number;
  /** CE weight of label 0 and label 1. */
  weights: readonly [number, number];
  /** Write the gradient (needs the count and total stages first, unless ohem). */
  grad: boolean;
  /** OHEM weights (2 channels): the main stage also binds p and the OHEM state. */
  ohem?: boolean;
}

const THREADS = 256;
/** Pixels each thread handles in the count and main kernels. */
const PER_THREAD = 8;
/** Pixels per workgroup (one partial each). */
const CHUNK = THREADS * PER_THREAD;

/** Partials per image and in all (one per main-kernel workgroup). */
export function cdLossPartials(s: CdLossSpec): { perImage: number; total: number } {
  const perImage = Math.ceil(s.pixels / CHUNK);
  return { perImage, total: perImage * s.batch };
}

function check(s: CdLossSpec): void {
  if (s.channels !== 1 && s.channels !== 2) throw new Error(`cdLoss: ${s.channels} channels`);
  if (!(s.pixels > 0 && s.batch > 0)) throw new Error("cdLoss: empty batch");
  if (s.weights.some((w) => !(w >= 0))) throw new Error(`cdLoss: class weights ${s.weights}`);
  if (s.ohem && s.channels !== 2) throw new Error("cdLoss: OHEM needs 2-channel softmax logits");
}

/** Pixels per lane: 4 when each image's pixels fill whole vec4s. */
function lanesOf(pixels: number): 1 | 4 {
  return pixels % 4 === 0 ? 4 : 1;
}

/** Binding options of the F and U aliases' elements. */
const F32 = { dtype: "f32" } as const, U32 = { dtype: "u32" } as const;

function aliases(w: 1 | 4): string {
  return w === 4 ? "alias F = vec4<f32>;\nalias U = vec4<u32>;" : "alias F = f32;\nalias U = u32;";
}

/** Sum of the lanes of an F. */
function lanesSum(w: 1 | 4, x: string): string {
  return w === 4 ? `dot(${x}, vec4<f32>(1.0))` : x;
}

/** Weight of label `y` (a U expression), 0 for ignored labels. */
function weightExpr(s: CdLossSpec, y: string): string {
  const [w0, w1] = s.weights.map(f);
  return `select(select(F(0.0), F(${w1}), ${y} == U(1u)), F(${w0}), ${y} == U(0u))`;
}

/** Tree sum of `red` (array<T, 256>) into red[0]. */
const treeSum = `  for (var s = ${THREADS / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }`;

/** The loop over this thread's lanes of its workgroup's chunk: `e` is the lane index within
 * image `b` (in lanes of W pixels). */
function laneLoop(s: CdLossSpec, perImage: number, total: number, g: string, body: string) {
  const W = lanesOf(s.pixels);
  const lanes = s.pixels / W;
  return `  let g = ${g};
  if (g >= ${total}u) { return; }
  let b = g / ${perImage}u;
  let first = (g % ${perImage}u) * ${CHUNK / W}u + lid;
  for (var k = 0u; k < ${PER_THREAD / W}u; k++) {
    let e = first + k * ${THREADS}u;
    if (e < ${lanes}u) {
${body}
    }
  }`;
}

/** Stage 1. Bindings: labels → wpart [partials]. */
function cdLossCountKernelGen(s: CdLossSpec): Kernel {
  check(s);
  const W = lanesOf(s.pixels);
  const { perImage, total } = cdLossPartials(s);
  const g = groupGrid(total);
  const body = `      acc += ${weightExpr(s, `labels[b * ${s.pixels / W}u + e]`)};`;
  const bindings = [ro("labels", "U", U32), rw("wpart")];
  const code = `${header(bindings)}
${aliases(W)}
var<workgroup> red: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var acc = F(0.0);
${laneLoop(s, perImage, total, g.index, body)}
  red[lid] = ${lanesSum(W, "acc")};
  workgroupBarrier();
${treeSum}
  if (lid == 0u) { wpart[g] = red[0]; }
}`;
  return { name: "cd_loss_count", bindings, code, workgroups: g.workgroups };
}

/** Stage 2. Bindings: wpart → invw [1] (1 / Σ w, or 0 when every pixel is ignored). */
function cdLossTotalKernelGen(s: CdLossSpec): Kernel {
  check(s);
  const { total } = cdLossPartials(s);
  const bindings = [ro("wpart"), rw("invw")];
  const code = `${header(bindings)}
var<workgroup> red: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc: f32 = 0.0;
  for (var i = lid; i < ${total}u; i += ${THREADS}u) { acc += wpart[i]; }
  red[lid] = acc;
  workgroupBarrier();
${treeSum}
  if (lid == 0u) { invw[0] = select(0.0, 1.0 / red[0], red[0] > 0.0); }
}`;
  return { name: "cd_loss_total", bindings, code, workgroups: [1, 1, 1] };
}

/** Stage 3. Bindings: logits, labels, [teacher if λ ≠ 0], [prob, OHEM state if ohem, else invw if
 * grad] → [grad if grad],
 * part [partials] of vec4 (Σ w·ce, Σ w, Σ sq, 0). */
function cdLossMainKernelGen(s: CdLossSpec): Kernel {
  check(s);
  const W = lanesOf(s.pixels);
  const { perImage, total } = cdLossPartials(s);
  const g = groupGrid(total);
  const C = s.channels, L = s.pixels / W;
  const kd = s.lambda !== 0;
  const bindings = [ro("logits", "F", F32), ro("labels", "U", U32)];
  if (kd) bindings.push(ro("teacher", "F", F32));
  if (s.ohem) bindings.push(ro("prob", "F", F32), ro("ostate", "u32"));
  else if (s.grad) bindings.push(ro("invw"));
  if (s.grad) bindings.push(rw("grad", "F", F32));
  bindings.push(rw("part", "vec4<f32>"));
  // Logit c of lane e of image b sits at (b·C + c)·L + e.
  const at = (c: number) => `(b * ${C}u + ${c}u) * ${L}u + e`;
  const ce = C === 1
    ? `      let z = logits[${at(0)}];
      // softplus(z) − y·z, written to stay finite for large |z|
      let ce = max(z, F(0.0)) - z * yf + log(F(1.0) + exp(-abs(z)));
      let dz0 = (F(1.0) / (F(1.0) + exp(-z)) - yf) * ws;`
    : `      let z0 = logits[${at(0)}];
      let z1 = logits[${at(1)}];
      let m = max(z0, z1);
      let e0 = exp(z0 - m);
      let e1 = exp(z1 - m);
      let se = e0 + e1;
      let ce = m + log(se) - select(z0, z1, y == U(1u));
      let dz0 = (e0 / se - (F(1.0) - yf)) * ws;
      let dz1 = (e1 / se - yf) * ws;`;
  // d/dz of λ·mean((z − t)²) over all B·C·HW elements.
  const mseScale = f((2 * s.lambda) / (s.batch * C * s.pixels));
  const perChannel = Array.from({ length: C }, (_, c) => {
    const lines: string[] = [];
    if (kd) {
      lines.push(`      let d${c} = logits[${at(c)}] - teacher[${at(c)}];`);
      lines.push(`      sq += d${c} * d${c};`);
    }
    if (s.grad) {
      const mse = kd ? ` + ${mseScale} * d${c}` : "";
      lines.push(`      grad[${at(c)}] = select(F(0.0), dz${c}, w > F(0.0))${mse};`);
    }
    return lines.join("\n");
  }).join("\n");
  // OHEM: keep only pixels below the threshold (ignored ones hold p = 2, never below).
  const weight = s.ohem
    ? `${weightExpr(s, "y")} * select(F(0.0), F(1.0), prob[b * ${L}u + e] < F(thr))`
    : weightExpr(s, "y");
  const body = `      let y = labels[b * ${L}u + e];
      let w = ${weight};
      let ws = w${s.grad ? " * iw" : ""};
      let yf = select(F(0.0), F(1.0), y == U(1u));
${ce}
      // Ignored pixels (w = 0) add nothing; select keeps a NaN/inf ce out of the sums.
      wce += select(F(0.0), w * ce, w > F(0.0));
      wsum += w;
${perChannel}`;
  const code = `${header(bindings)}
${aliases(W)}
var<workgroup> red: array<vec4<f32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${
    s.ohem
      ? `let thr = bitcast<f32>(ostate[3]);
  let iw = ${f(1 / (s.batch * s.pixels))};`
      : s.grad
      ? "let iw = invw[0];"
      : ""
  }
  var wce = F(0.0);
  var wsum = F(0.0);
  var sq = F(0.0);
${laneLoop(s, perImage, total, g.index, body)}
  red[lid] = vec4<f32>(${lanesSum(W, "wce")}, ${lanesSum(W, "wsum")}, ${lanesSum(W, "sq")}, 0.0);
  workgroupBarrier();
${treeSum}
  if (lid == 0u) { part[g] = red[0]; }
}`;
  return { name: "cd_loss", bindings, code, workgroups: g.workgroups };
}

/** Stage 4. Bindings: part → loss [1], perImage [batch]. Per image: its weighted CE mean over
 * its valid pixels (0 when it has none) + λ · its MSE. */
function cdLossFinishKernelGen(s: CdLossSpec): Kernel {
  check(s);
  const { perImage } = cdLossPartials(s);
  const C = s.channels, HW = s.pixels;
  // CE mean over the valid pixels' weights, or (OHEM) over every pixel.
  const ceImage = s.ohem ? `t.x * ${f(1 / HW)}` : "select(0.0, t.x / t.y, t.y > 0.0)";
  const ceAll = s.ohem
    ? `tot.x * ${f(1 / (s.batch * HW))}`
    : "select(0.0, tot.x / tot.y, tot.y > 0.0)";
  const bindings = [ro("part", "vec4<f32>"), rw("loss"), rw("per_image")];
  const code = `${header(bindings)}
var<workgroup> red: array<vec4<f32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) lid: u32) {
  var tot = vec4<f32>(0.0);
  for (var b = 0u; b < ${s.batch}u; b++) {
    var acc = vec4<f32>(0.0);
    for (var i = lid; i < ${perImage}u; i += ${THREADS}u) { acc += part[b * ${perImage}u + i]; }
    red[lid] = acc;
    workgroupBarrier();
${treeSum.replaceAll("\n", "\n  ")}
    let t = red[0];
    tot += t;
    if (lid == 0u) {
      per_image[b] = ${ceImage} + ${f(s.lambda / (C * HW))} * t.z;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    loss[0] = ${ceAll} + ${f(s.lambda / (s.batch * C * HW))} * tot.z;
  }
}`;
  return { name: "cd_loss_finish", bindings, code, workgroups: [1, 1, 1] };
}

/** Backward: dlogits = g · grad, g the loss's incoming (scalar) gradient. Bindings: grad, g →
 * out. `n` is the number of logits; vec4 lanes when it is a multiple of 4. */
function cdLossBackwardKernelGen(n: number): Kernel {
  const W = n % 4 === 0 ? 4 : 1;
  const bindings = [ro("grad", "F", F32), ro("g"), rw("out", "F", F32)];
  return kernel1d("cd_loss_backward", bindings, n / W, "out[i] = grad[i] * g[0];", aliases(W));
}

// Generated once per distinct spec (see cached in common.ts).
export const cdLossCountKernel = cached(cdLossCountKernelGen);
export const cdLossTotalKernel = cached(cdLossTotalKernelGen);
export const cdLossMainKernel = cached(cdLossMainKernelGen);
export const cdLossFinishKernel = cached(cdLossFinishKernelGen);
export const cdLossBackwardKernel = cached(cdLossBackwardKernelGen);
