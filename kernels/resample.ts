// Resizing of the last two axes (NCHW images): bilinear and nearest with PyTorch's source
// coordinates, and their gradients as gathers (each input pixel sums the output pixels that
// read it, found by binary search), so the backward pass is deterministic and needs no atomics.

import { cached, f, type Kernel, kernel1d, ro, rw } from "./common.ts";

export type ResampleMode = "bilinear" | "nearest";

export interface ResampleSpec {
  /** Leading axes flattened into one (N·C). */
  planes: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  mode: ResampleMode;
  alignCorners: boolean;
  /** The scale factor (h, w) the caller asked for, if any: PyTorch then maps coordinates with
   * 1/scale rather than in/out (they differ when in·scale is not whole). */
  scale?: readonly [number, number];
}

/** PyTorch's source-coordinate ratio of one axis (computed in f32 there, as here). */
export function coordinateScale(
  inSize: number,
  outSize: number,
  mode: ResampleMode,
  alignCorners: boolean,
  scale?: number,
): number {
  if (mode === "bilinear" && alignCorners) {
    return outSize > 1 ? Math.fround((inSize - 1) / (outSize - 1)) : 0;
  }
  return Math.fround(scale && scale > 0 ? 1 / scale : inSize / outSize);
}

/** WGSL of `fn taps_A(o: u32) -> Taps`: the two source indices of output index o along one
 * axis and their weights, exactly as PyTorch's CPU kernels compute them in f32. */
function tapsFn(
  axis: string,
  inSize: number,
  outSize: number,
  s: ResampleSpec,
  scale?: number,
): string {
  const ratio = coordinateScale(inSize, outSize, s.mode, s.alignCorners, scale);
  const head = `fn taps_${axis}(o: u32) -> Taps {`;
  if (s.mode === "nearest") {
    // PyTorch keeps two legacy shortcuts before the general floor(o · ratio).
    const idx = outSize === inSize
      ? "o"
      : outSize === 2 * inSize
      ? "o >> 1u"
      : `min(u32(floor(f32(o) * ${f(ratio)})), ${inSize - 1}u)`;
    return `${head}
  let i = ${idx};
  return Taps(i, i, 1.0, 0.0);
}`;
  }
  const src = s.alignCorners
    ? `${f(ratio)} * f32(o)`
    : `max(${f(ratio)} * (f32(o) + 0.5) - 0.5, 0.0)`;
  return `${head}
  let src = ${src};
  let i0 = min(u32(floor(src)), ${inSize - 1}u);
  let l1 = clamp(src - f32(i0), 0.0, 1.0);
  return Taps(i0, select(i0, i0 + 1u, i0 < ${inSize - 1}u), 1.0 - l1, l1);
}`;
}

function tapsFns(s: ResampleSpec): string {
  return `struct Taps { i0: u32, i1: u32, l0: f32, l1: f32 }
${tapsFn("h", s.inH, s.outH, s, s.scale?.[0])}
${tapsFn("w", s.inW, s.outW, s, s.scale?.[1])}`;
}

/** Planes (N·C) handled by one thread: the taps of a pixel are computed once and reused. The
 * largest divisor of the plane count up to 16, so no thread has a partial set. */
export function planesPerThread(planes: number): number {
  for (let d = Math.min(16, planes); d > 1; d--) if (planes % d === 0) return d;
  return 1;
}

/** One line per plane of a thread, written out so that the accumulators stay in registers. */
function unrolled(pb: number, line: (k: number) => string): string {
  return Array.from({ length: pb }, (_, k) => line(k)).join("\n");
}

function resampleKernelGen(s: ResampleSpec): Kernel {
  const pb = planesPerThread(s.planes);
  const outHW = s.outH * s.outW, inHW = s.inH * s.inW;
  const n = (s.planes / pb) * outHW;
  const value = s.mode === "nearest"
    ? "x[b + o00]"
    : `th.l0 * (tw.l0 * x[b + o00] + tw.l1 * x[b + o01]) +
      th.l1 * (tw.l0 * x[b + o10] + tw.l1 * x[b + o11])`;
  return kernel1d(
    `resample_${s.mode}`,
    [ro("x"), rw("out")],
    n,
    `let pix = i % ${outHW}u;
  let p0 = (i / ${outHW}u) * ${pb}u;
  let th = taps_h(pix / ${s.outW}u);
  let tw = taps_w(pix % ${s.outW}u);
  let o00 = th.i0 * ${s.inW}u + tw.i0;
  let o01 = th.i0 * ${s.inW}u + tw.i1;
  let o10 = th.i1 * ${s.inW}u + tw.i0;
  let o11 = th.i1 * ${s.inW}u + tw.i1;
${
      unrolled(
        pb,
        (k) =>
          `  { let b = (p0 + ${k}u) * ${inHW}u; out[(p0 + ${k}u) * ${outHW}u + pix] = ${value}; }`,
      )
    }`,
    `${tapsFns(s)}`,
  );
}

/** WGSL of `fn first_A(t: u32) -> u32`: the first output index whose lower tap is ≥ t. An
 * estimate from the inverse of the coordinate map is walked to the exact answer with the same
 * f32 taps as the forward pass (they are monotone in the output index), so rounding cannot
 * drop or double a contribution. */
function firstFn(
  axis: string,
  inSize: number,
  outSize: number,
  s: ResampleSpec,
  scale?: number,
): string {
  const r = coordinateScale(inSize, outSize, s.mode, s.alignCorners, scale);
  // o ≥ (t + 0.5) / r − 0.5 (half-pixel bilinear), o ≥ t / r otherwise, o ≥ t · out/in for
  // nearest's legacy shortcuts.
  let [a, b] = [1 / r, 0];
  if (s.mode === "bilinear" && !s.alignCorners) b = 0.5 / r - 0.5;
  if (s.mode === "nearest" && (outSize === inSize || outSize === 2 * inSize)) {
    a = outSize / inSize;
  }
  if (r === 0) { // align corners onto a single output: every tap is 0
    return `fn first_${axis}(t: u32) -> u32 { return select(${outSize}u, 0u, t == 0u); }`;
  }
  return `fn first_${axis}(t: u32) -> u32 {
  var o = min(u32(max(ceil(f32(t) * ${f(a)} + ${f(b)}), 0.0)), ${outSize}u);
  loop {
    if (o == 0u || taps_${axis}(o - 1u).i0 < t) { break; }
    o--;
  }
  loop {
    if (o == ${outSize}u || taps_${axis}(o).i0 >= t) { break; }
    o++;
  }
  return o;
}`;
}

/** Gradient w.r.t. the input: one thread per input pixel and group of planes, summing
 * weight · grad over the output pixels whose taps include it. */
function resampleGradKernelGen(s: ResampleSpec): Kernel {
  const pb = planesPerThread(s.planes);
  const outHW = s.outH * s.outW, inHW = s.inH * s.inW;
  const n = (s.planes / pb) * inHW;
  // Bilinear outputs reach back one input pixel (their upper tap), nearest ones do not.
  const from = (v: string) => s.mode === "bilinear" ? `max(${v}, 1u) - 1u` : v;
  return kernel1d(
    `resample_${s.mode}_grad`,
    [ro("g"), rw("dx")],
    n,
    `let pix = i % ${inHW}u;
  let p0 = (i / ${inHW}u) * ${pb}u;
  let ih = pix / ${s.inW}u;
  let iw = pix % ${s.inW}u;
  let oh_end = first_h(ih + 1u);
  let ow_start = first_w(${from("iw")});
  let ow_end = first_w(iw + 1u);
${unrolled(pb, (k) => `  var acc${k} = 0.0;`)}
  for (var oh = first_h(${from("ih")}); oh < oh_end; oh++) {
    let wh = weight(taps_h(oh), ih);
    for (var ow = ow_start; ow < ow_end; ow++) {
      let wt = wh * weight(taps_w(ow), iw);
      let o = p0 * ${outHW}u + oh * ${s.outW}u + ow;
${unrolled(pb, (k) => `      acc${k} += wt * g[o + ${k * outHW}u];`)}
    }
  }
${unrolled(pb, (k) => `  dx[(p0 + ${k}u) * ${inHW}u + pix] = acc${k};`)}`,
    `${tapsFns(s)}
${firstFn("h", s.inH, s.outH, s, s.scale?.[0])}
${firstFn("w", s.inW, s.outW, s, s.scale?.[1])}
fn weight(t: Taps, i: u32) -> f32 {
  return select(0.0, t.l0, t.i0 == i) + select(0.0, t.l1, t.i1 == i);
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const resampleKernel = cached(resampleKernelGen);
export const resampleGradKernel = cached(resampleGradKernelGen);
