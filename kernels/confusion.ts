// Per-image confusion counts (TP, FP, TN, FN) of a change map against its label, in one pass:
// a workgroup per (image, chunk of pixels) counts in registers, sums its threads in workgroup
// memory and adds its four totals to the image's row with atomicAdd<u32>. Integer sums, so the
// result does not depend on the order the workgroups finish in. The output must start at zero.
// When H·W is a multiple of 4 each load moves 4 pixels (vec4 lanes), as in kernels/cd_loss.ts.

import { cached, f, groupGrid, header, type Kernel, ro, rw } from "./common.ts";

export interface ConfusionSpec {
  batch: number;
  /** 1: changed where sigmoid(logit) > threshold; 2: changed where logit 1 > logit 0. */
  channels: 1 | 2;
  /** Pixels per image (H·W). */
  pixels: number;
  /** Probability threshold of the 1-channel form. */
  threshold: number;
}

const THREADS = 256;
/** Pixels each thread counts. */
const PER_THREAD = 16;
/** Pixels per workgroup. */
const CHUNK = THREADS * PER_THREAD;

/** Bindings: logits, labels (u32; 0, 1, anything else ignored) → counts [batch, 4] u32
 * (TP, FP, TN, FN), atomically added to. */
function confusionKernelGen(s: ConfusionSpec): Kernel {
  if (s.channels !== 1 && s.channels !== 2) throw new Error(`confusion: ${s.channels} channels`);
  const W = s.pixels % 4 === 0 ? 4 : 1;
  const chunks = Math.ceil(s.pixels / CHUNK);
  const total = chunks * s.batch;
  const g = groupGrid(total);
  const L = s.pixels / W;
  // argmax picks the first of equal logits (as torch.argmax does), so ties predict 0.
  const pred = s.channels === 1
    ? `F(1.0) / (F(1.0) + exp(-logits[b * ${L}u + e])) > F(${f(s.threshold)})`
    : `logits[(b * 2u + 1u) * ${L}u + e] > logits[b * ${2 * L}u + e]`;
  const types = W === 4
    ? `alias F = vec4<f32>;
alias U = vec4<u32>;
alias B = vec4<bool>;
fn cnt(v: B) -> u32 { return dot(select(vec4<u32>(0u), vec4<u32>(1u), v), vec4<u32>(1u)); }`
    : `alias F = f32;
alias U = u32;
alias B = bool;
fn cnt(v: B) -> u32 { return select(0u, 1u, v); }`;
  const bindings = [
    ro("logits", "F", { dtype: "f32" }),
    ro("labels", "U", { dtype: "u32" }),
    rw("counts", "atomic<u32>"),
  ];
  const code = `${header(bindings)}
${types}
var<workgroup> red: array<vec4<u32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = ${g.index};
  if (g >= ${total}u) { return; }
  let b = g / ${chunks}u;
  let first = (g % ${chunks}u) * ${CHUNK / W}u + lid;
  // (TP, FP, TN, FN)
  var acc = vec4<u32>(0u);
  for (var k = 0u; k < ${PER_THREAD / W}u; k++) {
    let e = first + k * ${THREADS}u;
    if (e < ${L}u) {
      let y = labels[b * ${L}u + e];
      let valid = y <= U(1u);
      let changed = ${pred};
      let truth = y == U(1u);
      acc += vec4<u32>(
        cnt(changed & truth & valid), cnt(changed & !truth & valid),
        cnt(!changed & !truth & valid), cnt(!changed & truth & valid));
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = ${THREADS / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  if (lid < 4u) {
    let v = red[0][lid];
    if (v > 0u) { atomicAdd(&counts[b * 4u + lid], v); }
  }
}`;
  return { name: "confusion", bindings, code, workgroups: g.workgroups };
}

// Generated once per distinct spec (see cached in common.ts).
export const confusionKernel = cached(confusionKernelGen);
