// Per-image confusion counts (TP, FP, TN, FN) of a change map against its label, in one pass:
// a workgroup per (image, chunk of pixels) counts in registers, sums its threads in workgroup
// memory and adds its four totals to the image's row with atomicAdd<u32>. Integer sums, so the
// result does not depend on the order the workgroups finish in. The output must start at zero.

import { f, groupGrid, type Kernel } from "./common.ts";

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
const PER_THREAD = 16;
const CHUNK = THREADS * PER_THREAD;

/** Bindings: logits, labels (u32; 0, 1, anything else ignored) → counts [batch, 4] u32
 * (TP, FP, TN, FN), atomically added to. */
export function confusionKernel(s: ConfusionSpec): Kernel {
  if (s.channels !== 1 && s.channels !== 2) throw new Error(`confusion: ${s.channels} channels`);
  const chunks = Math.ceil(s.pixels / CHUNK);
  const total = chunks * s.batch;
  const g = groupGrid(total);
  const HW = s.pixels, C = s.channels;
  // argmax picks the first of equal logits (as torch.argmax does), so ties predict 0.
  const pred = C === 1
    ? `1.0 / (1.0 + exp(-logits[b * ${HW}u + p])) > ${f(s.threshold)}`
    : `logits[(b * 2u + 1u) * ${HW}u + p] > logits[b * ${2 * HW}u + p]`;
  const code = `@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;
var<workgroup> red: array<vec4<u32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = ${g.index};
  if (g >= ${total}u) { return; }
  let b = g / ${chunks}u;
  let first = (g % ${chunks}u) * ${CHUNK}u + lid;
  // (TP, FP, TN, FN)
  var acc = vec4<u32>(0u);
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let p = first + k * ${THREADS}u;
    if (p < ${HW}u) {
      let y = labels[b * ${HW}u + p];
      if (y <= 1u) {
        let changed = ${pred};
        let truth = y == 1u;
        acc += vec4<u32>(
          u32(changed && truth), u32(changed && !truth),
          u32(!changed && !truth), u32(!changed && truth));
      }
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
  return { name: "confusion", code, workgroups: g.workgroups };
}
