// The threshold of mmseg's OHEMPixelSampler on the GPU, with no readback inside a step.
// The sampler keeps a valid pixel when p = softmax(logits)[label] < max(sorted(p)[k], thresh),
// k = min(minKept·batch, nValid − 1). A k-th order statistic over up to millions of values,
// found in two steps:
//   1. prob:  p per pixel (2.0 for ignored pixels) and, per workgroup, counts of valid pixels and
//             of pixels with p < thresh;
//   2. setup: totals; when more than k pixels lie below thresh, sorted[k] < thresh and the
//             threshold is thresh (done). Otherwise sorted[k] is the (k − nBelow)-th smallest of
//             the values ≥ thresh, and a radix select finds it exactly:
//   3. four (hist, scan) passes over the float bits, 8 bits at a time (p ≥ 0, so the u32 bit
//      patterns order like the values): hist counts, among values ≥ thresh whose higher bits
//      equal the prefix found so far, each value of the next 8 bits; scan picks the digit that
//      holds the wanted rank. After the last pass the prefix is sorted[k]'s bits.
// Every pass is always dispatched (no CPU branch); passes return at once when not needed.
//
// `state` (u32): [0] select needed, [1] prefix, [2] rank left, [3] threshold (f32 bits), then
// four 256-bin histograms.

import { cached, f, groupGrid, header, type Kernel, ro, rw } from "./common.ts";

export interface OhemSpec {
  batch: number;
  /** Pixels per image. */
  pixels: number;
  /** Probability threshold (mmseg `thresh`). */
  thresh: number;
  /** Pixels kept at least, per image (mmseg `min_kept`). */
  minKept: number;
}

const THREADS = 256;
/** Pixels per thread in the per-pixel kernels. */
const PER_THREAD = 8;
const CHUNK = THREADS * PER_THREAD;
export const OHEM_STATE_WORDS = 4 + 4 * 256;
/** Value stored for ignored pixels: above every probability, so never below a threshold. */
const IGNORED = "2.0";

/** Workgroups (count partials) of the prob and hist kernels. */
export function ohemGroups(s: OhemSpec): number {
  return Math.ceil((s.batch * s.pixels) / CHUNK);
}

function check(s: OhemSpec): void {
  if (!(s.batch > 0 && s.pixels > 0)) throw new Error("ohem: empty batch");
  if (!(s.thresh >= 0 && s.thresh <= 1)) throw new Error(`ohem: thresh ${s.thresh} not in [0, 1]`);
  if (!(Number.isInteger(s.minKept) && s.minKept >= 0)) {
    throw new Error(`ohem: minKept ${s.minKept} must be an integer ≥ 0`);
  }
  if (s.batch * s.pixels >= 2 ** 31) throw new Error("ohem: too many pixels for u32 counts");
}

/** Loop over this thread's pixels `i` of its workgroup's chunk (flat over the batch). */
function pixelLoop(s: OhemSpec, gi: string, body: string): string {
  const n = s.batch * s.pixels;
  return `  let g = ${gi};
  for (var k = 0u; k < ${PER_THREAD}u; k++) {
    let i = g * ${CHUNK}u + k * ${THREADS}u + lid;
    if (i < ${n}u) {
${body}
    }
  }`;
}

/** Stage 1. Bindings: logits [B, 2, HW], labels u32 [B, HW] → prob [B·HW], counts u32
 * [groups, 2] (valid, below thresh). Labels 0 and 1 are valid; every other value is ignored. */
function ohemProbKernelGen(s: OhemSpec): Kernel {
  check(s);
  const groups = ohemGroups(s);
  const g = groupGrid(groups);
  const HW = s.pixels;
  const body = `      let b = i / ${HW}u;
      let e = i % ${HW}u;
      let y = labels[i];
      var p = ${IGNORED};
      if (y <= 1u) {
        let z0 = logits[(b * 2u) * ${HW}u + e];
        let z1 = logits[(b * 2u + 1u) * ${HW}u + e];
        let m = max(z0, z1);
        let e0 = exp(z0 - m);
        let e1 = exp(z1 - m);
        p = select(e0, e1, y == 1u) / (e0 + e1);
        valid += 1u;
        below += select(0u, 1u, p < ${f(s.thresh)});
      }
      prob[i] = p;`;
  const bindings = [ro("logits"), ro("labels", "u32"), rw("prob"), rw("counts", "vec2<u32>")];
  const code = `${header(bindings)}
var<workgroup> red: array<vec2<u32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var valid = 0u;
  var below = 0u;
${pixelLoop(s, g.index, body)}
  red[lid] = vec2<u32>(valid, below);
  workgroupBarrier();
  for (var t = ${THREADS / 2}u; t > 0u; t >>= 1u) {
    if (lid < t) { red[lid] = red[lid] + red[lid + t]; }
    workgroupBarrier();
  }
  if (lid == 0u && g < ${groups}u) { counts[g] = red[0]; }
}`;
  return { name: "ohem_prob", bindings, code, workgroups: g.workgroups };
}

/** Stage 2 (one workgroup). Bindings: counts → state. */
function ohemSetupKernelGen(s: OhemSpec): Kernel {
  check(s);
  const groups = ohemGroups(s);
  const kept = s.minKept * s.batch;
  const bindings = [ro("counts", "vec2<u32>"), rw("state", "u32")];
  const code = `${header(bindings)}
var<workgroup> red: array<vec2<u32>, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<u32>(0u);
  for (var i = lid; i < ${groups}u; i += ${THREADS}u) { acc += counts[i]; }
  red[lid] = acc;
  for (var j = lid; j < 1024u; j += ${THREADS}u) { state[4u + j] = 0u; }
  workgroupBarrier();
  for (var t = ${THREADS / 2}u; t > 0u; t >>= 1u) {
    if (lid < t) { red[lid] = red[lid] + red[lid + t]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let valid = red[0].x;
    let below = red[0].y;
    // k = min(minKept·batch, nValid − 1); with nothing valid the threshold is thresh.
    let k = min(${kept}u, max(valid, 1u) - 1u);
    let need = valid > 0u && below <= k;
    state[0] = select(0u, 1u, need);
    state[1] = 0u;
    state[2] = select(0u, k - below, need);
    state[3] = bitcast<u32>(${f(s.thresh)});
  }
}`;
  return { name: "ohem_setup", bindings, code, workgroups: [1, 1, 1] };
}

/** Stage 3a, pass d (0: the top 8 bits). Bindings: prob → state (atomic histograms). */
function ohemHistKernelGen(s: OhemSpec, d: number): Kernel {
  check(s);
  const g = groupGrid(ohemGroups(s));
  const shift = 24 - 8 * d;
  // Bits above this pass's digit must equal the prefix (none for the first pass).
  const match = d === 0 ? "true" : `(bits >> ${shift + 8}u) == (prefix >> ${shift + 8}u)`;
  const body = `      let v = prob[i];
      if (v <= 1.0 && v >= ${f(s.thresh)}) {
        let bits = bitcast<u32>(v);
        if (${match}) { atomicAdd(&hist[(bits >> ${shift}u) & 255u], 1u); }
      }`;
  const bindings = [ro("prob"), rw("state", "atomic<u32>")];
  const code = `${header(bindings)}
var<workgroup> hist: array<atomic<u32>, 256>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // No early return: the barriers must stay in uniform control flow.
  let need = atomicLoad(&state[0]) != 0u;
  let prefix = atomicLoad(&state[1]);
  atomicStore(&hist[lid], 0u);
  workgroupBarrier();
  if (need) {
${pixelLoop(s, g.index, body)}
  }
  workgroupBarrier();
  let c = atomicLoad(&hist[lid]);
  if (need && c > 0u) { atomicAdd(&state[${4 + 256 * d}u + lid], c); }
}`;
  return { name: "ohem_hist", bindings, code, workgroups: g.workgroups };
}

/** Stage 3b, pass d (one thread): the digit holding the wanted rank. Bindings: → state. */
function ohemScanKernelGen(d: number): Kernel {
  const shift = 24 - 8 * d;
  const last = d === 3 ? "\n  state[3] = state[1];" : "";
  const bindings = [rw("state", "u32")];
  const code = `${header(bindings)}
@compute @workgroup_size(1)
fn main() {
  if (state[0] == 0u) { return; }
  var r = state[2];
  var digit = 255u;
  for (var j = 0u; j < 256u; j++) {
    let c = state[${4 + 256 * d}u + j];
    if (r < c) { digit = j; break; }
    r -= c;
  }
  state[1] = state[1] | (digit << ${shift}u);
  state[2] = r;${last}
}`;
  return { name: "ohem_scan", bindings, code, workgroups: [1, 1, 1] };
}

// Generated once per distinct spec (see cached in common.ts).
export const ohemProbKernel = cached(ohemProbKernelGen);
export const ohemSetupKernel = cached(ohemSetupKernelGen);
export const ohemHistKernel = cached(ohemHistKernelGen);
export const ohemScanKernel = cached(ohemScanKernelGen);
