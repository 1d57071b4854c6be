// Transposed 2-D convolution (PyTorch semantics, weight [Ci, Co/groups, kh, kw]) with fused bias
// and activation. Forward is the input-gradient kernel of the matching convolution; its
// backward is that convolution's forward (input gradient) and weight gradient. Kernel = stride
// from enough channels (SNUNet's k2 s2 up-convs) takes GEMMs and pixel shuffles instead
// (kernels/conv_plan.ts shuffleTransposeFits says when).

import type { ConvActivation, ConvGeometry, Epilogue, Pair } from "../../kernels/conv2d.ts";
import {
  convTransposeGeometry,
  shuffleEpilogueKernel,
  type ShuffleSpec,
  unshuffleKernel,
} from "../../kernels/conv_transpose2d.ts";
import { planOp } from "../../kernels/conv_plan.ts";
import { isGradEnabled, record, ruleIgnoresOutput } from "../autograd.ts";
import { traceConv } from "../conv_trace.ts";
import { run } from "../launch.ts";
import { addMacs } from "../profiler.ts";
import { recomputeByCopy } from "../copy_recipe.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import { gemm } from "./matmul.ts";
import {
  activationGrads,
  activationReadsOutput,
  checkEpilogueInputs,
  checkFloat,
  convCallSpec,
  epilogueFor,
  epilogueTensors,
} from "./conv2d.ts";
import {
  biasGrad,
  cancelledBiasGrad,
  convForwardRaw,
  convInputGradRaw,
  convWeightGradRaw,
} from "./conv2d_launch.ts";

export interface ConvTranspose2dOptions {
  /** [Co]. */
  bias?: Tensor | null;
  stride?: Pair;
  padding?: Pair;
  /** Extra rows/columns on the bottom/right of the output (< stride or < dilation). */
  outputPadding?: Pair;
  dilation?: Pair;
  groups?: number;
  activation?: ConvActivation;
  /** PReLU slope, [1] or [Co]; required with activation "prelu". */
  preluSlope?: Tensor;
  /** A batch-statistics normalisation follows: the bias gradient is exactly zero (conv2d's). */
  biasCancelled?: boolean;
}

/** convTranspose2d(x [B, Ci, H, W], w [Ci, Co/groups, kh, kw]) → [B, Co, Ho, Wo] with
 * Ho = (H − 1)·stride − 2·padding + dilation·(kh − 1) + outputPadding + 1. */
export function convTranspose2d(
  x: Tensor,
  w: Tensor,
  opts: ConvTranspose2dOptions = {},
): Tensor {
  const g = convTransposeGeometry(x.shape, w.shape, opts);
  checkFloat("convTranspose2d", x, w);
  const act = opts.activation ?? "none";
  const { bias, preluSlope: slope } = opts;
  checkEpilogueInputs("convTranspose2d", g.ci, act, bias, slope);
  const extra = epilogueTensors(bias, slope);
  const inputs = [x, w, ...extra];
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const call = convCallSpec("convTranspose2d", g, act, bias, opts.biasCancelled, recording);
  const inputGrad = recording && x.requiresGrad, weightGrad = recording && w.requiresGrad;
  traceConv({ ...call, inputGrad, weightGrad });
  const ep = epilogueFor(act, bias, slope, recording);
  const shuffle = planOp(call)?.kind === "shuffle-gemm";
  const forward = () =>
    shuffle ? shuffleForwardRaw(g, x, w, ep, extra) : convInputGradRaw(g, x, w, ep, extra);
  const { y, pre } = forward();
  // Its recipe: the launches again (the pre-activation, saved apart, is not this storage).
  const recipe = recomputeByCopy(() => {
    const again = forward();
    again.pre?.dispose();
    return again.y;
  });
  addMacs(g.batch * g.co * g.ho * g.wo * (g.ci / g.groups) * g.kh * g.kw);
  const db = (gz: Tensor) => opts.biasCancelled ? cancelledBiasGrad(bias!.size) : biasGrad(gz);
  const out = record(y, inputs, "convTranspose2d", (gy) => {
    const { gz, dslope } = activationGrads(act, gy, y, pre, slope);
    if (shuffle) {
      const u = unshuffled(g, gz);
      const grads: (Tensor | null)[] = [
        x.requiresGrad ? shuffleInputGradRaw(g, u, w) : null,
        w.requiresGrad ? shuffleWeightGradRaw(g, x, u) : null,
      ];
      u.dispose();
      if (bias) grads.push(bias.requiresGrad ? db(gz) : null);
      if (slope) grads.push(dslope);
      return grads;
    }
    // The weight gradient first, as conv2d's rule: its transforms (up to twice
    // WINO_WGRAD_CHUNK_BYTES) then come and go before the input gradient is allocated, not
    // beside it (FC-Siam's 12d at 8 × 512²: 268 MB off the step's peak).
    const dw = w.requiresGrad ? convWeightGradRaw(g, gz, x, false).dw : null;
    const grads: (Tensor | null)[] = [x.requiresGrad ? convForwardRaw(g, gz, w).y : null, dw];
    if (bias) grads.push(bias.requiresGrad ? db(gz) : null);
    if (slope) grads.push(dslope);
    return grads;
  }, recipe);
  return activationReadsOutput(act) ? out : ruleIgnoresOutput(out);
}

// ---- kernel == stride ---------------------------------------------------------------------
// Geometry g is the convolution's (convTransposeGeometry): g.co = the transposed conv's input
// channels, g.ci its output channels, g.ho × g.wo its input size, g.h × g.w its output size.

function shuffleSpec(g: ConvGeometry): ShuffleSpec {
  return { batch: g.batch, channels: g.ci, h: g.ho, w: g.wo, sy: g.strideY, sx: g.strideX };
}

/** Forward (no autograd): P[n] = Wᵀ × x[n] as [(co, a, b), (i, j)], then the shuffle into
 * y [B, Co, H·sy, W·sx] with the fused epilogue (and the pre-activation when it saves it). */
export function shuffleForwardRaw(
  g: ConvGeometry,
  x: Tensor,
  w: Tensor,
  ep: Epilogue,
  extra: Tensor[] = [],
): { y: Tensor; pre: Tensor | null } {
  const taps = g.kh * g.kw, hw = g.ho * g.wo;
  const wm = view(w, [g.co, g.ci * taps]), xm = view(x, [g.batch, g.co, hw]);
  const p = gemm(wm, xm, { transA: true });
  wm.dispose();
  xm.dispose();
  const shape = [g.batch, g.ci, g.h, g.w];
  const y = empty(shape);
  const pre = ep.savePre ? empty(shape) : null;
  run(shuffleEpilogueKernel(shuffleSpec(g), ep), [p, ...extra], pre ? [y, pre] : [y]);
  p.dispose();
  return { y, pre };
}

/** G [B, Co·sy·sx, H·W]: the output gradient gathered per tap (the shuffle's inverse). */
export function unshuffled(g: ConvGeometry, gy: Tensor): Tensor {
  const u = empty([g.batch, g.ci * g.kh * g.kw, g.ho * g.wo]);
  run(unshuffleKernel(shuffleSpec(g)), [gy], [u]);
  return u;
}

/** Input gradient from G: gx[n] = W [Ci, (co, a, b)] × G[n]. */
export function shuffleInputGradRaw(g: ConvGeometry, u: Tensor, w: Tensor): Tensor {
  const wm = view(w, [g.co, g.ci * g.kh * g.kw]);
  const gx = gemm(wm, u);
  wm.dispose();
  const out = view(gx, [g.batch, g.co, g.ho, g.wo]);
  gx.dispose();
  return out;
}

/** Weight gradient from G: dW [Ci, (co, a, b)] = Σ_n x[n] × G[n]ᵀ (batch folded into K). */
export function shuffleWeightGradRaw(g: ConvGeometry, x: Tensor, u: Tensor): Tensor {
  const xs = view(x, [g.batch, g.co, g.ho * g.wo]);
  const dw = gemm(xs, u, { transB: true, batchShape: [] });
  xs.dispose();
  const out = view(dw, [g.co, g.ci, g.kh, g.kw]);
  dw.dispose();
  return out;
}
