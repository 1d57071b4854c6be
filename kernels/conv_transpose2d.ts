// Transposed convolution as geometry: convTranspose2d(x, w) is the gradient w.r.t. the input of
// the convolution whose input is the transposed conv's output and whose output is its input,
// with the same weight tensor (PyTorch's [Ci, Co/groups, kh, kw] is that conv's
// [Cout, Cin/groups, kh, kw]). The kernels of conv2d serve all three computations.

import { type ConvGeometry, convOutSize, type Pair, pair } from "./conv2d.ts";

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
