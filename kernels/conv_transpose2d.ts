// Transposed convolution as geometry: convTranspose2d(x, w) is the gradient w.r.t. the input of
// the convolution whose input is the transposed conv's output and whose output is its input,
// with the same weight tensor (PyTorch's [Ci, Co/groups, kh, kw] is that conv's
// [Cout, Cin/groups, kh, kw]). The kernels of conv2d serve all three computations.

import { cached, grid1d, type Kernel, kernel, main1d, ro, rw } from "./common.ts";
import {
  type ConvGeometry,
  convOutSize,
  type Epilogue,
  epilogueBindings,
  epilogueStore,
  type Pair,
  pair,
} from "./conv2d.ts";

export interface ConvTransposeOptionsSpec {
  stride?: Pair;
  padding?: Pair;
  outputPadding?: Pair;
  dilation?: Pair;
  groups?: number;
}

/** PyTorch's output size of a transposed convolution along one axis. */
export function convTransposeOutSize(
  n: number,
  k: number,
  s: number,
  p: number,
  d: number,
  op: number,
): number {
  return (n - 1) * s - 2 * p + d * (k - 1) + op + 1;
}

/** The geometry of the convolution that convTranspose2d(x, w, o) is the input-gradient of:
 * its input [B, Co, Ho, Wo] is the transposed conv's output, its output [B, Ci, H, W] the
 * transposed conv's input. */
export function convTransposeGeometry(
  x: readonly number[],
  w: readonly number[],
  o: ConvTransposeOptionsSpec = {},
): ConvGeometry {
  if (x.length !== 4 || w.length !== 4) {
    throw new Error(`convTranspose2d: input [${x}] and weight [${w}] must both be 4-D (NCHW)`);
  }
  const [strideY, strideX] = pair(o.stride, 1);
  const [padY, padX] = pair(o.padding, 0);
  const [opY, opX] = pair(o.outputPadding, 0);
  const [dilY, dilX] = pair(o.dilation, 1);
  const groups = o.groups ?? 1;
  const [batch, ci, h, wd] = x;
  const [wci, cog, kh, kw] = w;
  if (wci !== ci || ci % groups) {
    throw new Error(
      `convTranspose2d: weight [${w}] must be [Ci, Co/groups, kh, kw] with Ci = ${ci} ` +
        `(input [${x}]) divisible by groups ${groups}`,
    );
  }
  if (Math.min(strideY, strideX, dilY, dilX) < 1 || Math.min(padY, padX, opY, opX) < 0) {
    throw new Error("convTranspose2d: stride and dilation must be ≥ 1, paddings ≥ 0");
  }
  if ((opY >= strideY && opY >= dilY) || (opX >= strideX && opX >= dilX)) {
    throw new Error("convTranspose2d: outputPadding must be smaller than stride or dilation");
  }
  const ho = convTransposeOutSize(h, kh, strideY, padY, dilY, opY);
  const wo = convTransposeOutSize(wd, kw, strideX, padX, dilX, opX);
  if (ho < 1 || wo < 1) throw new Error(`convTranspose2d: output of [${x}] would be empty`);
  const geom: ConvGeometry = {
    batch,
    ci: cog * groups,
    h: ho,
    w: wo,
    co: ci,
    ho: h,
    wo: wd,
    kh,
    kw,
    strideY,
    strideX,
    padY,
    padX,
    dilY,
    dilX,
    groups,
  };
  if (
    convOutSize(ho, kh, strideY, padY, dilY) !== h ||
    convOutSize(wo, kw, strideX, padX, dilX) !== wd
  ) {
    throw new Error(`convTranspose2d: inconsistent geometry for input [${x}], weight [${w}]`);
  }
  return geom;
}

// ---- kernel == stride: each output pixel gets exactly one tap ----------------------------------
//
// With kh = stride_y, kw = stride_x, no padding, dilation 1, no output padding and one group,
// y[n, co, s·i + a, s·j + b] = Σ_ci x[n, ci, i, j]·W[ci, co, a, b]: the forward is a GEMM
// P[n] = Wᵀ[(co, a, b), ci] × x[n][ci, (i, j)] followed by a pixel shuffle of P into y, and the
// input and weight gradients are GEMMs over G[n][(co, a, b), (i, j)] = gy[n, co, s·i + a, s·j + b]
// (the inverse shuffle). The two shuffles are the kernels below; the GEMMs are the matmul op's.

export interface ShuffleSpec {
  batch: number;
  /** Channels of the shuffled tensor (the transposed conv's output channels). */
  channels: number;
  /** The transposed conv's input size and the stride (= kernel). */
  h: number;
  w: number;
  sy: number;
  sx: number;
}

/** Index of P[n, (c·sy + a)·sx + b, i·w + j] for the output element (n, c, Y, X) in `o`
 * (WGSL, from flat output index `o`). */
function shuffleIndex(s: ShuffleSpec): string {
  const W = s.w * s.sx, H = s.h * s.sy;
  return `let X = o % ${W}u;
  let Y = (o / ${W}u) % ${H}u;
  let nc = o / ${W * H}u;
  let c = nc % ${s.channels}u;
  let src = (nc * ${s.sy * s.sx}u + (Y % ${s.sy}u) * ${s.sx}u + X % ${s.sx}u) * ${s.h * s.w}u +
    (Y / ${s.sy}u) * ${s.w}u + X / ${s.sx}u;`;
}

/** y[n, c, Y, X] = act(P[n, (c·sy + Y % sy)·sx + X % sx, (Y / sy)·w + X / sx] + bias[c]), with
 * the convolutions' fused epilogue (bias, activation, saved pre-activation). Bindings: P,
 * [bias], [slope], out, [pre]. */
function shuffleEpilogueKernelGen(s: ShuffleSpec, e: Epilogue): Kernel {
  const n = s.batch * s.channels * s.h * s.sy * s.w * s.sx;
  const g = grid1d(n);
  return kernel(
    "conv_transpose2d_shuffle",
    [ro("inp"), ...epilogueBindings(e)],
    g.workgroups,
    `${main1d(g.index, n, 256, "o")}
  ${shuffleIndex(s)}
  ${epilogueStore(e, "inp[src]", "c", "o")}
}`,
  );
}

/** The inverse: G[n, (c·sy + a)·sx + b, i·w + j] = gy[n, c, s·i + a, s·j + b], written as
 * out[src] = gy[o] (one thread per element of gy, so its reads are contiguous). Bindings: gy, G. */
function unshuffleKernelGen(s: ShuffleSpec): Kernel {
  const n = s.batch * s.channels * s.h * s.sy * s.w * s.sx;
  const g = grid1d(n);
  return kernel(
    "conv_transpose2d_unshuffle",
    [ro("gy"), rw("out")],
    g.workgroups,
    `${main1d(g.index, n, 256, "o")}
  ${shuffleIndex(s)}
  out[src] = gy[o];
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const shuffleEpilogueKernel = cached(shuffleEpilogueKernelGen);
export const unshuffleKernel = cached(unshuffleKernelGen);
