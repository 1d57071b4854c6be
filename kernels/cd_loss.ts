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
// Two-stage sums keep it deterministic (WGSL has no float atomics).

import { f, groupGrid, type Kernel } from "./common.ts";

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
  /** Write the gradient (needs the count and total stages first). */
  grad: boolean;
}

const THREADS = 256;
/** Pixels each thread handles in the count and main kernels. */
const PER_THREAD = 8;
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
}

/** Weight of label `y` (a u32 expression), 0 for ignored labels. */
function weightExpr(s: CdLossSpec, y: string): string {
  return `select(select(0.0, ${f(s.weights[1])}, ${y} == 1u), ${f(s.weights[0])}, ${y} == 0u)`;
}

/** Tree sum of `red` (array<T, 256>) into red[0]. */
const treeSum = `  for (var s = ${THREADS / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }`;

/** Stage 1. Bindings: labels → wpart [partials]. */
export function cdLossCountKernel(s: CdLossSpec): Kernel {
  check(s);
  const { perImage, total } = cdLossPartials(s);
  const g = groupGrid(total);
  const code = `@group(0) @binding(0) var<storage, read> labels: array<u32>;
@group(0) @binding(1) var<storage, read_write> wpart: array<f32>;
var<workgroup> red: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = ${g.index};
  if (g >= ${total}u) { return; }
  let b = g / ${perImage}u;
  let first = (g % ${perImage}u) * ${CHUNK}u + lid;
  var acc: f32 = 0.0;
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let p = first + k * ${THREADS}u;
    if (p < ${s.pixels}u) {
      let y = labels[b * ${s.pixels}u + p];
      acc += ${weightExpr(s, "y")};
    }
  }
  red[lid] = acc;
  workgroupBarrier();
${treeSum}
  if (lid == 0u) { wpart[g] = red[0]; }
}`;
  return { name: "cd_loss_count", code, workgroups: g.workgroups };
}

/** Stage 2. Bindings: wpart → invw [1] (1 / Σ w, or 0 when every pixel is ignored). */
export function cdLossTotalKernel(s: CdLossSpec): Kernel {
  check(s);
  const { total } = cdLossPartials(s);
  const code = `@group(0) @binding(0) var<storage, read> wpart: array<f32>;
@group(0) @binding(1) var<storage, read_write> invw: array<f32>;
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
  return { name: "cd_loss_total", code, workgroups: [1, 1, 1] };
}

/** Stage 3. Bindings: logits, labels, [teacher if λ ≠ 0], [invw if grad] → [grad if grad],
 * part [partials] of vec4 (Σ w·ce, Σ w, Σ sq, 0). */
export function cdLossMainKernel(s: CdLossSpec): Kernel {
  check(s);
  const { perImage, total } = cdLossPartials(s);
  const g = groupGrid(total);
  const C = s.channels, HW = s.pixels;
  const kd = s.lambda !== 0;
  const decls = ["@group(0) @binding(0) var<storage, read> logits: array<f32>;"];
  decls.push("@group(0) @binding(1) var<storage, read> labels: array<u32>;");
  if (kd) decls.push(`@group(0) @binding(${decls.length}) var<storage, read> teacher: array<f32>;`);
  if (s.grad) {
    decls.push(`@group(0) @binding(${decls.length}) var<storage, read> invw: array<f32>;`);
  }
  if (s.grad) {
    decls.push(`@group(0) @binding(${decls.length}) var<storage, read_write> grad: array<f32>;`);
  }
  decls.push(
    `@group(0) @binding(${decls.length}) var<storage, read_write> part: array<vec4<f32>>;`,
  );
  // Logit c of pixel p of image b sits at (b·C + c)·HW + p.
  const at = (c: number) => `(b * ${C}u + ${c}u) * ${HW}u + p`;
  const ce = C === 1
    ? `      let z = logits[${at(0)}];
      let yf = f32(y == 1u);
      // softplus(z) − y·z, written to stay finite for large |z|
      let ce = max(z, 0.0) - z * yf + log(1.0 + exp(-abs(z)));
      let dz0 = (1.0 / (1.0 + exp(-z)) - yf) * ws;`
    : `      let z0 = logits[${at(0)}];
      let z1 = logits[${at(1)}];
      let m = max(z0, z1);
      let e0 = exp(z0 - m);
      let e1 = exp(z1 - m);
      let se = e0 + e1;
      let ce = m + log(se) - select(z0, z1, y == 1u);
      let yf = f32(y == 1u);
      let dz0 = (e0 / se - (1.0 - yf)) * ws;
      let dz1 = (e1 / se - yf) * ws;`;
  // d/dz of λ·mean((z − t)²) over all B·C·HW elements.
  const mseScale = f((2 * s.lambda) / (s.batch * C * HW));
  const perChannel = Array.from({ length: C }, (_, c) => {
    const lines: string[] = [];
    if (kd) {
      lines.push(`      let d${c} = logits[${at(c)}] - teacher[${at(c)}];`);
      lines.push(`      sq += d${c} * d${c};`);
    }
    if (s.grad) {
      const mse = kd ? ` + ${mseScale} * d${c}` : "";
      lines.push(`      grad[${at(c)}] = select(0.0, dz${c}, w > 0.0)${mse};`);
    }
    return lines.join("\n");
  }).join("\n");
  const code = `${decls.join("\n")}
var<workgroup> red: array<vec4<f32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = ${g.index};
  if (g >= ${total}u) { return; }
  let b = g / ${perImage}u;
  let first = (g % ${perImage}u) * ${CHUNK}u + lid;
  ${s.grad ? "let iw = invw[0];" : ""}
  var wce: f32 = 0.0;
  var wsum: f32 = 0.0;
  var sq: f32 = 0.0;
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let p = first + k * ${THREADS}u;
    if (p < ${HW}u) {
      let y = labels[b * ${HW}u + p];
      let w = ${weightExpr(s, "y")};
      let ws = w${s.grad ? " * iw" : ""};
${ce}
      // Ignored pixels (w = 0) add nothing; select keeps a NaN/inf ce out of the sums.
      wce += select(0.0, w * ce, w > 0.0);
      wsum += w;
${perChannel}
    }
  }
  red[lid] = vec4<f32>(wce, wsum, sq, 0.0);
  workgroupBarrier();
${treeSum}
  if (lid == 0u) { part[g] = red[0]; }
}`;
  return { name: "cd_loss", code, workgroups: g.workgroups };
}

/** Stage 4. Bindings: part → loss [1], perImage [batch]. Per image: its weighted CE mean over
 * its valid pixels (0 when it has none) + λ · its MSE. */
export function cdLossFinishKernel(s: CdLossSpec): Kernel {
  check(s);
  const { perImage } = cdLossPartials(s);
  const C = s.channels, HW = s.pixels;
  const code = `@group(0) @binding(0) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;
@group(0) @binding(2) var<storage, read_write> per_image: array<f32>;
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
      per_image[b] = select(0.0, t.x / t.y, t.y > 0.0) + ${f(s.lambda / (C * HW))} * t.z;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    loss[0] = select(0.0, tot.x / tot.y, tot.y > 0.0) + ${f(s.lambda / (s.batch * C * HW))} * tot.z;
  }
}`;
  return { name: "cd_loss_finish", code, workgroups: [1, 1, 1] };
}
