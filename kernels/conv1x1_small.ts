// 1×1 convolutions (stride 1, no padding, one group) with few channels both ways (TinyCD's
// classifier and mask chains: 3→10, 16→8, 8→1, …). They are memory-bound: every pixel's few
// channels are read once and a handful of multiply-adds done with them, so GEMM tiles (16×16
// outputs and up) are mostly padding and their weight gradient, a tiny Co×Ci result summed over
// millions of pixels, needs split-K partials. Two kernels instead:
//
// - a per-pixel channel mix, out[n, o, p] = Σ_i w(o, i)·in[n, i, p], for the forward (o = Co,
//   with the fused epilogue) and the input gradient (o = Ci, w transposed): each thread takes 4
//   consecutive pixels (vec4 when H·W % 4 = 0) and keeps min(I, O) vec4 in registers;
// - the weight gradient: each workgroup sums a chunk of pixels for every (co, ci) (and the bias
//   column) of its channel blocks, threads split into blocks whose products stay in registers
//   (≤ 8 input channels × ≤ 64/8 output channels), then a shared-memory tree; the partials
//   [split, Co, Ci+1] are summed by conv2d_wgrad's splitReduceKernel. It also takes the weight
//   gradient (only) of 1×1 convs with up to 1152 weights (24→24, 48→24, …; the thresholds and
//   their reasons are in kernels/conv_plan.ts):
//   above MAX_BLOCKS blocks they are dealt out in groups of ≤ MAX_BLOCKS, one workgroup per
//   (pixel chunk, group), so x is read once per output-channel block and dy once per
//   input-channel block. Not yet timed on a GPU against the split-K GEMM it replaces there.

import { cached, grid1d, type Kernel, kernel, main1d, ro, rw } from "./common.ts";
import { convBindings, type Epilogue, epilogueStore } from "./conv2d.ts";

export interface Small1x1 {
  batch: number;
  ci: number;
  co: number;
  /** Pixels per image (H·W). */
  pixels: number;
}

/** Input channels per weight-gradient thread block, accumulators per thread (about). */
const CI_BLOCK = 8;
const ACC_BUDGET = 64;
/** Channel blocks per workgroup (each gets 256 / blocks threads, at least 32). */
export const MAX_BLOCKS = 8;
/** Workgroups of the weight gradient, over splits and block groups together (about). */
const MAX_WORKGROUPS = 2048;

export interface WgradBlocks {
  /** Input / output channels per block, block counts along each. */
  cib: number;
  cob: number;
  nci: number;
  nco: number;
  /** Blocks per workgroup (≤ MAX_BLOCKS) and block groups (workgroups per split): block
   * b = group·perGroup + local (block b covers input block b % nci, output block b / nci). */
  perGroup: number;
  groups: number;
  /** Threads per block. */
  threads: number;
}

export function wgradBlocks(ci: number, co: number): WgradBlocks {
  const cib = Math.min(ci, CI_BLOCK);
  const cob = Math.min(co, Math.max(1, Math.floor(ACC_BUDGET / cib)));
  const nci = Math.ceil(ci / cib), nco = Math.ceil(co / cob);
  const blocks = nci * nco;
  const groups = Math.ceil(blocks / MAX_BLOCKS);
  // Balanced groups (9 blocks: 5 + 4, not 8 + 1).
  const g = Math.ceil(blocks / groups);
  const threads = g === 1 ? 256 : g === 2 ? 128 : g <= 4 ? 64 : 32;
  return { cib, cob, nci, nco, perGroup: g, groups, threads };
}

export interface MixSpec extends Small1x1 {
  /** "forward": out has Co channels, w(o, i) = w[o·Ci + i]; "dgrad": out has Ci channels,
   * w(o, i) = w[i·Ci + o]. */
  mode: "forward" | "dgrad";
  epilogue: Epilogue;
}

/** Bindings: in, w, [bias], [slope], out, [pre]. */
function mixKernelGen(s: MixSpec): Kernel {
  const [I, O] = s.mode === "forward" ? [s.ci, s.co] : [s.co, s.ci];
  const wIdx = (o: number, i: number) => (s.mode === "forward" ? o * s.ci + i : i * s.ci + o);
  const vec = s.pixels % 4 === 0;
  const U = vec ? s.pixels / 4 : s.pixels;
  const n = s.batch * U;
  const g = grid1d(n);
  const T = vec ? "vec4<f32>" : "f32";
  const body: string[] = [];
  const store = (o: number, v: string) =>
    epilogueStore(s.epilogue, v, `${o}u`, `ob + ${o * U}u`, vec);
  if (I <= O) {
    // Every input channel in registers, one output at a time.
    for (let i = 0; i < I; i++) body.push(`let v${i} = inp[ib + ${i * U}u];`);
    for (let o = 0; o < O; o++) {
      const terms = Array.from({ length: I }, (_, i) => `wt[${wIdx(o, i)}] * v${i}`);
      body.push(store(o, `(${terms.join(" + ")})`));
    }
  } else {
    // Every output accumulated in registers, one input at a time.
    for (let o = 0; o < O; o++) body.push(`var a${o}: ${T} = ${T}(0.0);`);
    for (let i = 0; i < I; i++) {
      body.push(`{ let v = inp[ib + ${i * U}u];`);
      for (let o = 0; o < O; o++) body.push(`  a${o} = fma(${T}(wt[${wIdx(o, i)}]), v, a${o});`);
      body.push("}");
    }
    for (let o = 0; o < O; o++) body.push(store(o, `a${o}`));
  }
  return kernel(
    `conv1x1_small_${s.mode}`,
    convBindings(s.epilogue, "inp", { in: vec, out: vec }),
    g.workgroups,
    `${main1d(g.index, n, 256, "u")}
  let nb = u / ${U}u;
  let p = u % ${U}u;
  let ib = nb * ${I * U}u + p;
  let ob = nb * ${O * U}u + p;
  ${body.join("\n  ")}
}`,
  );
}

export interface SmallWgradSpec extends Small1x1 {
  bias: boolean;
  /** Pixel chunks (each workgroup writes its blocks' part of one partial [Co, Ci + bias]) and
   * pixel units per chunk. */
  splits: number;
  chunk: number;
}

/** Pixel units (vec4 or single pixels) and the split of them into chunks: about 8 units per
 * thread, at most 1024 partials and about MAX_WORKGROUPS workgroups (splits × block groups). */
export function smallWgradSplits(s: Small1x1): { units: number; splits: number; chunk: number } {
  const units = s.batch * (s.pixels % 4 === 0 ? s.pixels / 4 : s.pixels);
  const { threads, groups } = wgradBlocks(s.ci, s.co);
  const most = Math.max(1, Math.min(1024, Math.floor(MAX_WORKGROUPS / groups)));
  const want = Math.max(1, Math.min(most, Math.ceil(units / (threads * 8))));
  const chunk = Math.ceil(units / want);
  return { units, splits: Math.ceil(units / chunk), chunk };
}

/** Rounds of this many accumulators go through shared memory at once (16 × 256 floats). */
const ROUND = 16;

/** Partials part[split, co, ci (+ bias column)]. Bindings: x, dy, part. Workgroup w takes pixel
 * chunk w / groups and block group w % groups (the groups of one chunk run side by side, so their
 * re-reads of x and dy can come from cache). */
function smallWgradKernelGen(s: SmallWgradSpec): Kernel {
  const b = wgradBlocks(s.ci, s.co);
  const NB = b.nci * b.nco, PG = b.perGroup, T = b.threads, WG = T * PG;
  const vec = s.pixels % 4 === 0;
  const U = vec ? s.pixels / 4 : s.pixels;
  const units = s.batch * U;
  const cols1 = s.ci + (s.bias ? 1 : 0);
  const prodOf = (a: string, c: string) => (vec ? `dot(${a}, ${c})` : `${a} * ${c}`);
  const sumOf = (a: string) => (vec ? `(${a}.x + ${a}.y + ${a}.z + ${a}.w)` : a);
  // Blocks come in a few shapes (full or last partial block along each side, with or without
  // the bias column); one loop body per shape, the channel offsets are the thread's.
  const shapes = new Map<string, { cis: number; cos: number; bias: boolean }>();
  for (let blk = 0; blk < NB; blk++) {
    const ib = blk % b.nci, ob = Math.floor(blk / b.nci);
    const cis = Math.min(b.cib, s.ci - ib * b.cib), cos = Math.min(b.cob, s.co - ob * b.cob);
    const bias = s.bias && ib === 0;
    shapes.set(`${cis},${cos},${bias}`, { cis, cos, bias });
  }
  let amax = 0;
  const kinds: string[] = [];
  const branches: string[] = [];
  for (const [k, { cis, cos, bias }] of [...shapes.values()].entries()) {
    amax = Math.max(amax, cos * cis + (bias ? cos : 0));
    kinds.push(
      `if (cis == ${cis}u && cos == ${cos}u && ${bias ? "" : "!"}wb) { kind = ${k}u; }`,
    );
    const lines: string[] = [];
    for (let i = 0; i < cis; i++) lines.push(`let x${i} = xs[xb + ${i * U}u];`);
    for (let o = 0; o < cos; o++) {
      lines.push(`let d${o} = dy[yb + ${o * U}u];`);
      for (let i = 0; i < cis; i++) {
        lines.push(`a${o * cis + i} += ${prodOf(`x${i}`, `d${o}`)};`);
      }
      if (bias) lines.push(`a${cos * cis + o} += ${sumOf(`d${o}`)};`);
    }
    branches.push(`if (kind == ${k}u) {\n      ${lines.join("\n      ")}\n    }`);
  }
  const rounds = Math.ceil(amax / ROUND);
  const seg = T / ROUND; // threads summing one (block, accumulator) in the first reduce step
  const roundCode: string[] = [];
  for (let r = 0; r < rounds; r++) {
    const writes: string[] = [];
    for (let j = 0; j < ROUND; j++) {
      const k = r * ROUND + j;
      writes.push(`sh[${j * WG}u + lid] = ${k < amax ? `a${k}` : "0.0"};`);
    }
    roundCode.push(`{
    ${writes.join("\n    ")}
    workgroupBarrier();
    var t = 0.0;
    {
      let q = lid / ${seg}u;
      let base = (q % ${ROUND}u) * ${WG}u + (q / ${ROUND}u) * ${T}u + (lid % ${seg}u) * ${ROUND}u;
      for (var m = 0u; m < ${ROUND}u; m++) { t += sh[base + m]; }
    }
    workgroupBarrier();
    sh[lid] = t;
    workgroupBarrier();
    if (lid < ${PG * ROUND}u) {
      var tot = 0.0;
      for (var m = 0u; m < ${seg}u; m++) { tot += sh[lid * ${seg}u + m]; }
      emit(blk0 + lid / ${ROUND}u, ${r * ROUND}u + lid % ${ROUND}u, tot, split);
    }
    workgroupBarrier();
  }`);
  }
  const accs = Array.from({ length: amax }, (_, k) => `var a${k} = 0.0;`);
  const T4 = vec ? "vec4<f32>" : "f32";
  return kernel(
    "conv1x1_small_wgrad",
    [ro("xs", T4), ro("dy", T4), rw("part")],
    [s.splits * b.groups, 1, 1],
    `var<workgroup> sh: array<f32, ${ROUND * WG}>;

// Accumulator k of block blk → part[split, co, col].
fn emit(blk: u32, k: u32, v: f32, split: u32) {
  if (blk >= ${NB}u) { return; }
  let ib = blk % ${b.nci}u;
  let ob = blk / ${b.nci}u;
  let cis = min(${b.cib}u, ${s.ci}u - ib * ${b.cib}u);
  let cos = min(${b.cob}u, ${s.co}u - ob * ${b.cob}u);
  var co = 0u;
  var col = 0u;
  if (k < cos * cis) {
    co = ob * ${b.cob}u + k / cis;
    col = ib * ${b.cib}u + k % cis;
  } else if (${s.bias} && ib == 0u && k < cos * (cis + 1u)) {
    co = ob * ${b.cob}u + k - cos * cis;
    col = ${s.ci}u;
  } else {
    return;
  }
  part[(split * ${s.co}u + co) * ${cols1}u + col] = v;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let split = wg.x / ${b.groups}u;
  let blk0 = (wg.x % ${b.groups}u) * ${PG}u;
  // This thread's block: its channel offsets and loop body (none past the last block).
  let blk = blk0 + lid / ${T}u;
  var kind = ${shapes.size}u;
  var xo = 0u;
  var yo = 0u;
  if (blk < ${NB}u) {
    let ib = blk % ${b.nci}u;
    let ob = blk / ${b.nci}u;
    let cis = min(${b.cib}u, ${s.ci}u - ib * ${b.cib}u);
    let cos = min(${b.cob}u, ${s.co}u - ob * ${b.cob}u);
    let wb = ${s.bias} && ib == 0u;
    ${kinds.join("\n    ")}
    xo = ib * ${b.cib * U}u;
    yo = ob * ${b.cob * U}u;
  }
  let u0 = split * ${s.chunk}u;
  let u1 = min(u0 + ${s.chunk}u, ${units}u);
  ${accs.join("\n  ")}
  for (var u = u0 + lid % ${T}u; u < u1; u += ${T}u) {
    let nb = u / ${U}u;
    let p = u % ${U}u;
    let xb = nb * ${s.ci * U}u + p + xo;
    let yb = nb * ${s.co * U}u + p + yo;
    ${branches.join(" else ")}
  }
  ${roundCode.join("\n  ")}
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const mixKernel = cached(mixKernelGen);
export const smallWgradKernel = cached(smallWgradKernelGen);
