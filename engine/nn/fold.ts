// Eval-mode conv → BatchNorm (→ activation) as one convolution: the BN's running statistics
// folded into the conv's weight and bias, the activation fused into its write-out. No autograd.

import { isGradEnabled } from "../autograd.ts";
import { conv2d, type ConvActivation, foldBatchNorm } from "../ops/conv2d.ts";
import { conv2dConcat, convTranspose2dConcat } from "../ops/conv2d_concat.ts";
import { convTranspose2d } from "../ops/conv_transpose2d.ts";
import type { Tensor } from "../tensor.ts";
import { Conv2d, ConvTranspose2d } from "./conv.ts";
import type { BatchNorm2d } from "./norm.ts";

/** Whether a conv → BN pair runs folded now: in eval, with folding on, and without a tape (the
 * fold is not differentiable, so an eval forward with gradients runs the two layers). */
export function foldsNow(bn: BatchNorm2d, fold: boolean): boolean {
  return !bn.training && fold && !isGradEnabled();
}

/** The conv's weight and bias with the BN's running statistics folded in (foldBatchNorm). */
export function foldedWeights(
  conv: Conv2d | ConvTranspose2d,
  bn: BatchNorm2d,
): { weight: Tensor; bias: Tensor } {
  return foldBatchNorm(
    conv.weight,
    conv.bias,
    bn.runningMean,
    bn.runningVar,
    bn.weight,
    bn.bias,
    bn.eps,
    conv instanceof ConvTranspose2d,
  );
}

export function foldedConvBn(
  conv: Conv2d | ConvTranspose2d,
  bn: BatchNorm2d,
  x: Tensor | Tensor[],
  activation: ConvActivation = "none",
): Tensor {
  const { weight, bias } = foldedWeights(conv, bn);
  const c = conv.config;
  const opts = { bias, stride: c.stride, padding: c.padding, activation };
  // x may be the parts of a channel concatenation (engine/ops/conv2d_concat.ts).
  if (conv instanceof ConvTranspose2d) {
    const t = { ...opts, outputPadding: conv.config.outputPadding };
    return Array.isArray(x) ? convTranspose2dConcat(x, weight, t) : convTranspose2d(x, weight, t);
  }
  const o = { ...opts, dilation: conv.config.dilation, groups: conv.config.groups };
  return Array.isArray(x) ? conv2dConcat(x, weight, o) : conv2d(x, weight, o);
}

/** A module owning conv → BatchNorm pairs that folds them in eval (ConvBnAct, the ResNet and
 * ResNeSt blocks); engine/nn/conv_bn_act.ts setEvalFolding turns it off to compare. */
export interface EvalFolding {
  foldInEval: boolean;
}

/** conv → BatchNorm (→ ReLU) of two layers that a block registers under its own names (mmseg's
 * conv1 / bn1, as the original state_dict has them, where ConvBnAct would add a level): in eval
 * without a tape one folded conv with the ReLU in its write-out (`fold` false: the two layers, to
 * compare), else the conv and the BN's passes with the ReLU fused into them, as the blocks ran
 * them before (a conv bias, ResNeSt's fc1, keeps its rounding-noise gradient). */
export function convThenBn(
  conv: Conv2d,
  bn: BatchNorm2d,
  x: Tensor,
  act: "none" | "relu",
  fold: boolean,
): Tensor {
  if (foldsNow(bn, fold)) return foldedConvBn(conv, bn, x, act);
  return bn.forward(conv.forward(x), act === "relu" ? { activation: "relu" } : undefined);
}
