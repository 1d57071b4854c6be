// Transposed 2-D convolution (PyTorch semantics, weight [Ci, Co/groups, kh, kw]) with fused bias
// and activation. Forward is the input-gradient kernel of the matching convolution; its
// backward is that convolution's forward (input gradient) and weight gradient.

import type { ConvActivation, Pair } from "../../kernels/conv2d.ts";
import { convTransposeGeometry } from "../../kernels/conv_transpose2d.ts";
import { isGradEnabled, record } from "../autograd.ts";
import { addMacs } from "../profiler.ts";
import type { Tensor } from "../tensor.ts";
import {
  activationBackward,
  biasGrad,
  checkEpilogueInputs,
  checkFloat,
  convForwardRaw,
  convInputGradRaw,
  convWeightGradRaw,
  epilogueFor,
  preluSlopeGrad,
} from "./conv2d.ts";

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
  const extra = [...(bias ? [bias] : []), ...(slope ? [slope] : [])];
  const inputs = [x, w, ...extra];
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const { y, pre } = convInputGradRaw(g, x, w, epilogueFor(act, bias, slope, recording), extra);
  addMacs(g.batch * g.co * g.ho * g.wo * (g.ci / g.groups) * g.kh * g.kw);
  return record(y, inputs, "convTranspose2d", (gy) => {
    const gz = activationBackward(act, gy, y, pre, slope);
    const grads: (Tensor | null)[] = [
      x.requiresGrad ? convForwardRaw(g, gz, w).y : null,
      w.requiresGrad ? convWeightGradRaw(g, gz, x, false).dw : null,
    ];
    if (bias) grads.push(bias.requiresGrad ? biasGrad(gz) : null);
    if (slope) grads.push(slope.requiresGrad ? preluSlopeGrad(gy, pre!, slope) : null);
    return grads;
  });
}
