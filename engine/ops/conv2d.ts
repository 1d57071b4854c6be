// 2-D convolution (NCHW, PyTorch weight layout) with bias and activation fused into the
// kernel's write-out, its backward (input, weight, bias and PReLU-slope gradients), and the
// eval-mode BatchNorm fold. The raw (non-recording) launches are exported for the transposed
// convolution, which is the same three computations with the roles of input and output swapped.

import {
  type ConvActivation,
  type ConvGeometry,
  convGeometry,
  dgradIsDirect,
  type Epilogue,
  foldBatchNormKernel,
  forwardIsDirect,
  NO_EPILOGUE,
  type Pair,
  wgradIsDirect,
} from "../../kernels/conv2d.ts";
import { col2imKernel, columnsBytes } from "../../kernels/conv2d_columns.ts";
import { directConvKernel } from "../../kernels/conv2d_direct.ts";
import {
  dgradWinogradSpec,
  forwardWinogradSpec,
  winogradFits,
  winogradFitsDgrad,
  winogradKernel,
  type WinogradSpec,
  winogradWeightKernel,
  winogradWeightShape,
} from "../../kernels/conv2d_winograd.ts";
import {
  implicitGemmKernel,
  packWeightsKernel,
  splitSumKernel,
} from "../../kernels/conv2d_gemm.ts";
import {
  dgradGemmSpecs,
  forwardGemmSpec,
  type ImplicitGemmSpec,
} from "../../kernels/conv2d_gemm_plan.ts";
import {
  wgradGradTransformKernel,
  wgradInputTransformKernel,
  wgradOutputTransformKernel,
  WINO4_ELEMENTS,
  winoWgradBytesPerImage,
  winoWgradSpec,
  winoWgradTiles,
} from "../../kernels/conv2d_winograd_wgrad.ts";
import {
  directWgradStrips,
  pickSplits,
  pickWgradTile,
  splitReduceKernel,
  wgradColumns,
  wgradDirectKernel,
  wgradGemmKernel,
} from "../../kernels/conv2d_wgrad.ts";
import { isGradEnabled, record } from "../autograd.ts";
import { run } from "../launch.ts";
import { addMacs } from "../profiler.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import {
  small1x1Fits,
  small1x1MixRaw,
  small1x1WeightGradRaw,
  smallWgradFits,
} from "./conv1x1_small.ts";
import { add, mapNamed } from "./elementwise.ts";
import { gemm, matmul } from "./matmul.ts";
import { sum } from "./reduce.ts";
import { reshape } from "./shape.ts";

export type { ConvActivation, Pair };

export interface Conv2dOptions {
  /** [Co]. */
  bias?: Tensor | null;
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  /** Applied in the kernel's write-out (default "none"). */
  activation?: ConvActivation;
  /** PReLU slope, [1] (shared) or [Co]; required with activation "prelu". */
  preluSlope?: Tensor;
}

/** Tensors the epilogue reads, after the input and the weight. */
function epilogueTensors(bias: Tensor | null | undefined, slope?: Tensor): Tensor[] {
  return [...(bias ? [bias] : []), ...(slope ? [slope] : [])];
}

export function checkEpilogueInputs(
  op: string,
  channels: number,
  act: ConvActivation,
  bias?: Tensor | null,
  slope?: Tensor,
): void {
  for (const t of [bias, slope]) {
    if (t && t.dtype !== "f32") throw new Error(`${op}: ${t.describe()} must be f32`);
  }
  if (bias && (bias.ndim !== 1 || bias.size !== channels)) {
    throw new Error(`${op}: bias ${bias.describe()} must be [${channels}]`);
  }
  if (act === "prelu") {
    if (!slope) throw new Error(`${op}: activation "prelu" needs preluSlope`);
    if (slope.size !== 1 && slope.size !== channels) {
      throw new Error(`${op}: preluSlope ${slope.describe()} must be [1] or [${channels}]`);
    }
  } else if (slope) throw new Error(`${op}: preluSlope given without activation "prelu"`);
}

export function checkFloat(op: string, x: Tensor, w: Tensor): void {
  if (x.dtype !== "f32" || w.dtype !== "f32") {
    throw new Error(`${op}: input ${x.describe()} and weight ${w.describe()} must be f32`);
  }
}

/** The epilogue for an op whose backward may need the pre-activation. */
export function epilogueFor(
  act: ConvActivation,
  bias: Tensor | null | undefined,
  slope: Tensor | undefined,
  recording: boolean,
): Epilogue {
  return {
    bias: !!bias,
    activation: act,
    savePre: recording && (act === "silu" || act === "prelu"),
    slopes: slope?.size,
  };
}

/** Forward launch (no autograd): y = act(conv(x, w) + bias), and the pre-activation when the
 * epilogue saves it. */
export function convForwardRaw(
  g: ConvGeometry,
  x: Tensor,
  w: Tensor,
  ep: Epilogue = NO_EPILOGUE,
  extra: Tensor[] = [],
): { y: Tensor; pre: Tensor | null } {
  if (small1x1Fits(g) && !forwardIsDirect(g)) return small1x1MixRaw(g, "forward", x, w, ep, extra);
  const shape = [g.batch, g.co, g.ho, g.wo];
  const y = empty(shape);
  const pre = ep.savePre ? empty(shape) : null;
  const outs = pre ? [y, pre] : [y];
  if (winogradFits(g)) {
    runWinograd(forwardWinogradSpec(g, ep), x, w, false, extra, outs);
    return { y, pre };
  }

  if (forwardIsDirect(g)) {
    run(directConvKernel({ mode: "forward", geom: g, epilogue: ep }), [x, w, ...extra], outs);
  } else {
    runImplicitGemm(forwardGemmSpec(g, ep), x, w, extra, outs);
  }
  return { y, pre };
}

/** `w` rearranged for a GEMM with packedWeights. */
export function packWeights(spec: ImplicitGemmSpec, w: Tensor): Tensor {
  const taps = spec.nty * spec.ntx;
  const packed = empty([spec.groups * taps * spec.rg * Math.ceil(spec.mg / 4) * 4]);
  run(packWeightsKernel(spec), [w], [packed]);
  return packed;
}

/** One implicit-GEMM launch writing `outs` (after packing `w` when the spec reads packed
 * weights); a split reduction writes [splits, ...out] partial sums that splitSumKernel adds up
 * with the epilogue. */
export function runImplicitGemm(
  spec: ImplicitGemmSpec,
  input: Tensor,
  w: Tensor,
  extra: Tensor[],
  outs: Tensor[],
): void {
  const splits = spec.splits ?? 1;
  const wp = spec.packedWeights ? packWeights(spec, w) : w;
  if (splits === 1) {
    run(implicitGemmKernel(spec), [input, wp, ...extra], outs);
  } else {
    const part = empty([splits, ...outs[0].shape]);
    run(implicitGemmKernel(spec), [input, wp], [part]);
    const hw = spec.outH * spec.outW;
    const sum = { splits, batch: spec.batch, outC: spec.outC, hw, epilogue: spec.epilogue };
    run(splitSumKernel(sum), [part, ...extra], outs);
    part.dispose();
  }
  if (wp !== w) wp.dispose();
}

/** A Winograd launch (no autograd): the filters transformed to [16, R, Mp] (transposed and
 * flipped for an input gradient), then the fused kernel writing `outs`. */
export function runWinograd(
  spec: WinogradSpec,
  input: Tensor,
  w: Tensor,
  flip: boolean,
  extra: Tensor[],
  outs: Tensor[],
): void {
  const shape = winogradWeightShape(spec);
  const u = empty(shape);
  run(winogradWeightKernel({ m: spec.m, r: spec.r, mp: shape[2], flip }), [w], [u]);
  run(winogradKernel(spec), [input, u, ...extra], outs);
  u.dispose();
}

/** Gradient w.r.t. the input of conv geometry `g` (a transposed conv of dy), no autograd;
 * the epilogue (bias per input channel, activation) serves the transposed-conv forward. */
export function convInputGradRaw(
  g: ConvGeometry,
  dy: Tensor,
  w: Tensor,
  ep: Epilogue = NO_EPILOGUE,
  extra: Tensor[] = [],
): { y: Tensor; pre: Tensor | null } {
  if (small1x1Fits(g) && !dgradIsDirect(g)) return small1x1MixRaw(g, "dgrad", dy, w, ep, extra);
  const shape = [g.batch, g.ci, g.h, g.w];
  const y = empty(shape);
  const pre = ep.savePre ? empty(shape) : null;
  const outs = pre ? [y, pre] : [y];
  if (winogradFitsDgrad(g)) {
    runWinograd(dgradWinogradSpec(g, ep), dy, w, true, extra, outs);
  } else if (col2imFits(g)) {
    runCol2im(g, dy, w, ep, extra, outs);
  } else if (dgradIsDirect(g)) {
    run(directConvKernel({ mode: "dgrad", geom: g, epilogue: ep }), [dy, w, ...extra], outs);
  } else {
    for (const spec of dgradGemmSpecs(g, ep)) {
      if (spec.ny > 0 && spec.nx > 0) runImplicitGemm(spec, dy, w, extra, outs);
    }
  }
  return { y, pre };
}

/** Strided convs (one group, kernel > 1×1) with a cols buffer of at most 512 MB. */
function columnsFit(g: ConvGeometry): boolean {
  return g.groups === 1 && (g.strideY > 1 || g.strideX > 1) && g.kh * g.kw > 1 &&
    columnsBytes(g) <= 512 << 20;
}

/** The input gradient takes GEMM + col2im (kernels/conv2d_columns.ts) from 64 channels each way:
 * in an H200 sweep of FC-Siam's k3 s2 up-convs it beat the phase-split implicit GEMM at 128 and
 * 64 channels (0.126 against 0.239 ms, 0.182 against 0.207) and lost at 32 and 16. */
export function col2imFits(g: ConvGeometry): boolean {
  return columnsFit(g) && g.ci >= 64 && g.co >= 64;
}

/** The input gradient as cols = Wᵀ × dy (the matmul kernel) and a gather of cols into `outs`
 * with the epilogue. */
export function runCol2im(
  g: ConvGeometry,
  dy: Tensor,
  w: Tensor,
  ep: Epilogue,
  extra: Tensor[],
  outs: Tensor[],
): void {
  const w2 = view(w, [g.co, g.ci * g.kh * g.kw]);
  const dy2 = view(dy, [g.batch, g.co, g.ho * g.wo]);
  const cols = gemm(w2, dy2, { transA: true });
  w2.dispose();
  dy2.dispose();
  run(col2imKernel({ geom: g, epilogue: ep }), [cols, ...extra], outs);
  cols.dispose();
}

/** Gradient w.r.t. the weight [Co, Ci/groups, kh, kw] (and the bias [Co] when asked) of conv
 * geometry `g`, from its input x and output gradient dy; no autograd. 1×1 convs with at most
 * 1152 weights take the small 1×1 kernel (smallWgradFits) unless the direct kernel takes them. */
export function convWeightGradRaw(
  g: ConvGeometry,
  x: Tensor,
  dy: Tensor,
  withBias: boolean,
): { dw: Tensor; db: Tensor | null } {
  return smallWgradFits(g) && !wgradIsDirect(g)
    ? small1x1WeightGradRaw(g, x, dy, withBias)
    : kernelWeightGradRaw(g, x, dy, withBias);
}

/** convWeightGradRaw on the conv kernels alone (Winograd, direct or split GEMM), without the
 * small 1×1 route (tests and benchmarks compare the two). */
export function kernelWeightGradRaw(
  g: ConvGeometry,
  x: Tensor,
  dy: Tensor,
  withBias: boolean,
): { dw: Tensor; db: Tensor | null } {
  if (winogradWgradFits(g)) {
    return { dw: winogradWeightGradRaw(g, x, dy), db: withBias ? biasGrad(dy) : null };
  }
  const cols = wgradColumns(g, false);
  const dw = empty([g.co, g.ci / g.groups, g.kh, g.kw]);
  const db = withBias ? empty([g.co]) : null;
  const cols1 = cols + (withBias ? 1 : 0);
  let splits: number;
  let part: Tensor;
  if (wgradIsDirect(g)) {
    const rw = 4;
    const strips = directWgradStrips(g, rw);
    splits = Math.max(1, Math.min(Math.ceil(2048 / g.co), Math.ceil(strips / 1024), 65535));
    const chunk = Math.ceil(strips / splits);
    splits = Math.ceil(strips / chunk);
    part = empty([splits, g.co, cols1]);
    run(wgradDirectKernel({ geom: g, bias: withBias, splits, chunk, rw }), [x, dy], [part]);
  } else {
    const mg = g.co / g.groups;
    const { tile, target } = pickWgradTile(mg, cols1);
    const tiles = Math.ceil(cols1 / tile.tk) * Math.ceil(mg / tile.tm) * g.groups;
    const sp = pickSplits(tiles, g.batch * g.ho * g.wo, tile.tp, 16, target);
    splits = sp.splits;
    part = splits === 1 && !withBias ? dw : empty([splits, g.co, cols1]);
    run(
      wgradGemmKernel({ geom: g, bias: withBias, splits, chunk: sp.chunk, tile }),
      [x, dy],
      [part],
    );
  }
  if (part !== dw) {
    run(
      splitReduceKernel({ splits, co: g.co, cols, bias: withBias }),
      [part],
      db ? [dw, db] : [dw],
    );
    part.dispose();
  }
  return { dw, db };
}

/** Transformed operands per launch: larger batches go through in chunks of images, which
 * bounds the temporary memory (and keeps each operand inside one storage binding). */
const WINO_WGRAD_CHUNK_BYTES = 512 << 20;

/** Winograd's weight gradient beat the GEMM on every FC-Siam layer with 16 or more channels
 * each way in an H200 sweep (16→16 @512: 0.79 against 1.02 ms; 128→128 @64: 0.14 against
 * 0.42). */
export function winogradWgradFits(g: ConvGeometry): boolean {
  return winogradFits(g) && g.ci >= 16 && g.co >= 16 &&
    winoWgradBytesPerImage(g) <= WINO_WGRAD_CHUNK_BYTES;
}

/** Weight gradient [Co, Ci, 3, 3] of a 3×3 stride-1 conv by Winograd F(4×4, 3×3): the input
 * patches and output-gradient tiles transformed, one batched GEMM over the tiles per
 * transform element, the result transformed back (kernels/conv2d_winograd_wgrad.ts). */
export function winogradWeightGradRaw(
  g: ConvGeometry,
  x: Tensor,
  dy: Tensor,
  chunkBytes = WINO_WGRAD_CHUNK_BYTES,
): Tensor {
  const per = Math.max(1, Math.floor(chunkBytes / winoWgradBytesPerImage(g)));
  let m: Tensor | null = null;
  for (let n0 = 0; n0 < g.batch; n0 += per) {
    const s = winoWgradSpec(g, n0, Math.min(per, g.batch - n0));
    const { t } = winoWgradTiles(s);
    const v = empty([WINO4_ELEMENTS, g.ci, t]);
    run(wgradInputTransformKernel(s), [x], [v]);
    const w = empty([WINO4_ELEMENTS, g.co, t]);
    run(wgradGradTransformKernel(s), [dy], [w]);
    const part = gemm(w, v, { transB: true });
    v.dispose();
    w.dispose();
    if (m) {
      const sum: Tensor = add(m, part);
      m.dispose();
      part.dispose();
      m = sum;
    } else m = part;
  }
  const dw = empty([g.co, g.ci, 3, 3]);
  run(wgradOutputTransformKernel(winoWgradSpec(g)), [m!], [dw]);
  m!.dispose();
  return dw;
}

/** PReLU slope viewed for broadcasting against [B, C, H, W]. */
function slopeView(slope: Tensor): Tensor {
  return slope.size === 1 ? slope : view(slope, [1, slope.size, 1, 1]);
}

/** Gradient at the pre-activation z from the gradient at the output y = act(z). */
export function activationBackward(
  act: ConvActivation,
  gy: Tensor,
  y: Tensor,
  pre: Tensor | null,
  slope?: Tensor,
): Tensor {
  switch (act) {
    case "none":
      return gy;
    case "relu":
      return mapNamed("relu_grad", "select(0.0, g, y > 0.0)", [["g", gy], ["y", y]]);
    case "sigmoid":
      return mapNamed("sigmoid_grad", "g * y * (1.0 - y)", [["g", gy], ["y", y]]);
    case "silu":
      return mapNamed(
        "silu_grad",
        "g * (1.0 / (1.0 + exp(-z))) * (1.0 + z * (1.0 - 1.0 / (1.0 + exp(-z))))",
        [["g", gy], ["z", pre!]],
      );
    case "prelu":
      return mapNamed("prelu_grad", "select(s * g, g, z > 0.0)", [
        ["g", gy],
        ["z", pre!],
        ["s", slopeView(slope!)],
      ]);
  }
}

/** dL/dslope of a PReLU: Σ g·min(z, 0), per channel or over everything. */
export function preluSlopeGrad(gy: Tensor, pre: Tensor, slope: Tensor): Tensor {
  const prod = mapNamed("prelu_slope_grad", "g * min(z, 0.0)", [["g", gy], ["z", pre]]);
  const s = slope.size === 1 ? sum(prod) : sum(prod, [0, 2, 3]);
  return view(s, slope.shape);
}

/** Bias gradient on its own (when the weight needs none): Σ over batch, height, width. */
export function biasGrad(gz: Tensor): Tensor {
  return sum(gz, [0, 2, 3]);
}

/** A 1×1 convolution (stride 1, no padding, one group) is the product W[Co, Ci] × X[b] of
 * [Ci, H·W], which the matmul op serves. Not: convs to at most DIRECT_MAX_CHANNELS channels
 * (the direct kernel), those with few weights (small1x1Fits: the small 1×1 kernels), and those
 * with at most 1152 weights, where the matmul op's weight gradient (the batch folded into a
 * long reduction over a tiny product) lost to the conv kernels' split GEMM on an H200 (24→24
 * @256: 0.27 against 0.17 ms) and forward and input gradient came out even; their weight
 * gradient now takes the small 1×1 kernel (smallWgradFits, see convWeightGradRaw). */
export function matmul1x1Fits(g: ConvGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.strideY === 1 && g.strideX === 1 && g.padY === 0 &&
    g.padX === 0 && g.groups === 1 && !forwardIsDirect(g) && !small1x1Fits(g) &&
    g.ci * g.co > 1152;
}

/** The matmul route also needs an epilogue it can fuse: no activation, ReLU or sigmoid (whose
 * gradients need only the output), and SiLU when no gradient is recorded (inference with
 * BatchNorm folded; its backward would need the pre-activation, which the conv kernels save). */
function isPlainGemm(g: ConvGeometry, act: ConvActivation, recording: boolean): boolean {
  return matmul1x1Fits(g) &&
    (act === "none" || act === "relu" || act === "sigmoid" || (act === "silu" && !recording));
}

/** conv2d(x [B, Ci, H, W], w [Co, Ci/groups, kh, kw]) → [B, Co, Ho, Wo], PyTorch semantics,
 * with optional bias and a fused activation. */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = convGeometry(x.shape, w.shape, opts);
  checkFloat("conv2d", x, w);
  const act = opts.activation ?? "none";
  const { bias, preluSlope: slope } = opts;
  checkEpilogueInputs("conv2d", g.co, act, bias, slope);
  const extra = epilogueTensors(bias, slope);
  const inputs = [x, w, ...extra];
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  if (isPlainGemm(g, act, recording)) {
    const y = matmul(reshape(w, [g.co, g.ci]), reshape(x, [g.batch, g.ci, g.h * g.w]), {
      bias: bias ?? undefined,
      biasAxis: "m",
      activation: act === "none" || act === "prelu" ? undefined : act,
    });
    return reshape(y, [g.batch, g.co, g.ho, g.wo]);
  }
  const ep = epilogueFor(act, bias, slope, recording);
  const { y, pre } = convForwardRaw(g, x, w, ep, extra);
  addMacs(g.batch * g.co * g.ho * g.wo * (g.ci / g.groups) * g.kh * g.kw);
  return record(y, inputs, "conv2d", (gy) => {
    const gz = activationBackward(act, gy, y, pre, slope);
    const wantB = !!bias?.requiresGrad;
    let dw: Tensor | null = null, db: Tensor | null = null;
    if (w.requiresGrad) ({ dw, db } = convWeightGradRaw(g, x, gz, wantB));
    else if (wantB) db = biasGrad(gz);
    const grads: (Tensor | null)[] = [
      x.requiresGrad ? convInputGradRaw(g, gz, w).y : null,
      dw,
    ];
    if (bias) grads.push(db);
    if (slope) grads.push(slope.requiresGrad ? preluSlopeGrad(gy, pre!, slope) : null);
    return grads;
  });
}

/** Eval-mode BatchNorm folded into the conv before it: with s = γ/√(var + ε),
 * w' = w·s per output channel and b' = (b − mean)·s + β, so conv(x, w', b') equals
 * bn(conv(x, w, b)). γ, β may be null (BatchNorm without affine). `transposed`: w is a
 * transposed conv's [Ci, Co, kh, kw] (one group), whose output channels are axis 1. No
 * autograd. */
export function foldBatchNorm(
  w: Tensor,
  b: Tensor | null,
  mean: Tensor,
  variance: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  eps = 1e-5,
  transposed = false,
): { weight: Tensor; bias: Tensor } {
  if (w.ndim !== 4) throw new Error(`foldBatchNorm: weight ${w.describe()} must be 4-D`);
  const co = w.shape[transposed ? 1 : 0];
  const outer = transposed ? w.shape[0] : 1;
  for (const t of [b, mean, variance, gamma, beta]) {
    if (t && t.size !== co) {
      throw new Error(`foldBatchNorm: ${t.describe()} does not match ${co} output channels`);
    }
  }
  if (!gamma !== !beta) throw new Error("foldBatchNorm: give both gamma and beta, or neither");
  const weight = empty(w.shape);
  const bias = empty([co]);
  const inputs = [w, ...(b ? [b] : []), mean, variance, ...(gamma ? [gamma, beta!] : [])];
  run(
    foldBatchNormKernel({
      co,
      perChannel: w.size / (co * outer),
      outer,
      eps,
      hasBias: !!b,
      affine: !!gamma,
    }),
    inputs,
    [weight, bias],
  );
  return { weight, bias };
}
