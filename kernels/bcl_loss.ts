// STANet's batch-balanced contrastive loss (Open-CD's BCLLoss) over a distance map d and labels t:
//   L = Σ_{t=0} d² / (n_u + eps)  +  Σ_{t=1} max(m − d, 0)² / (n_c + eps)
// with n_c = #(t = 1) and n_u = #(t ≠ 1): upstream zeroes ignored labels (255) before counting
// the unchanged pixels, so ignored pixels add to n_u but to neither sum. Sums run over the whole
// batch (upstream squeezes it away). Two stages keep them deterministic (no float atomics):
//   1. partial: one workgroup per chunk of pixels writes (Σ_u d², n_u, Σ_c max(m−d,0)², n_c);
//   2. finish:  one workgroup adds the partials and writes the loss and 1/(n_u+eps), 1/(n_c+eps).
// The backward is elementwise: dL/dd = 2d/(n_u+eps) where t = 0, −2·max(m−d,0)/(n_c+eps) where
// t = 1, else 0, times the incoming scalar.

import { cached, f, groupGrid, header, type Kernel, kernel1d, ro, rw } from "./common.ts";

export interface BclSpec {
  /** Pixels in the whole batch. */
  n: number;
  margin: number;
  /** Added to both counts (upstream passes its ignore_index, 255, into this slot). */
  eps: number;
}

const THREADS = 256;
const PER_THREAD = 8;
const CHUNK = THREADS * PER_THREAD;

export function bclPartials(n: number): number {
  return Math.ceil(n / CHUNK);
}

/** Bindings: d [n], labels [n] u32 → part [partials] of vec4. */
function bclPartialKernelGen(s: BclSpec): Kernel {
  const parts = bclPartials(s.n);
  const g = groupGrid(parts);
  const bindings = [ro("d"), ro("labels", "u32"), rw("part", "vec4<f32>")];
  const code = `${header(bindings)}
var<workgroup> red: array<vec4<f32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = ${g.index};
  if (g >= ${parts}u) { return; }
  var acc = vec4<f32>(0.0);
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let e = g * ${CHUNK}u + k * ${THREADS}u + lid;
    if (e < ${s.n}u) {
      let t = labels[e];
      let x = d[e];
      let h = max(${f(s.margin)} - x, 0.0);
      if (t == 0u) { acc += vec4<f32>(x * x, 1.0, 0.0, 0.0); }
      else if (t == 1u) { acc += vec4<f32>(0.0, 0.0, h * h, 1.0); }
      else { acc += vec4<f32>(0.0, 1.0, 0.0, 0.0); }
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = ${THREADS / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { part[g] = red[0]; }
}`;
  return { name: "bcl_partial", bindings, code, workgroups: g.workgroups };
}

/** Bindings: part → loss [1], scale [2] (1/(n_u+eps), 1/(n_c+eps)). */
function bclFinishKernelGen(s: BclSpec): Kernel {
  const parts = bclPartials(s.n);
  const bindings = [ro("part", "vec4<f32>"), rw("loss"), rw("scale")];
  const code = `${header(bindings)}
var<workgroup> red: array<vec4<f32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = vec4<f32>(0.0);
  for (var i = lid; i < ${parts}u; i += ${THREADS}u) { acc += part[i]; }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = ${THREADS / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let r = red[0];
    let iu = 1.0 / (r.y + ${f(s.eps)});
    let ic = 1.0 / (r.w + ${f(s.eps)});
    loss[0] = r.x * iu + r.z * ic;
    scale[0] = iu;
    scale[1] = ic;
  }
}`;
  return { name: "bcl_finish", bindings, code, workgroups: [1, 1, 1] };
}

/** Bindings: d, labels, scale [2], g [1] → dd [n]. */
function bclBackwardKernelGen(s: BclSpec): Kernel {
  return kernel1d(
    "bcl_backward",
    [ro("d"), ro("labels", "u32"), ro("scale"), ro("g"), rw("dd")],
    s.n,
    `let t = labels[i];
  let x = d[i];
  let h = max(${f(s.margin)} - x, 0.0);
  let v = select(select(0.0, -2.0 * h * scale[1], t == 1u), 2.0 * x * scale[0], t == 0u);
  dd[i] = v * g[0];`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const bclPartialKernel = cached(bclPartialKernelGen);
export const bclFinishKernel = cached(bclFinishKernelGen);
export const bclBackwardKernel = cached(bclBackwardKernelGen);
