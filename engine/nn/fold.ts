// Eval-mode conv → BatchNorm (→ activation) as one convolution: the BN's running statistics
// folded into the conv's weight and bias, the activation fused into its write-out. No autograd.

import { conv2d, type ConvActivation, foldBatchNorm } from "../ops/conv2d.ts";
import { conv2dConcat, convTranspose2dConcat } from "../ops/conv2d_concat.ts";
import { convTranspose2d } from "../ops/conv_transpose2d.ts";
import type { Tensor } from "../tensor.ts";
import { Conv2d, ConvTranspose2d } from "./conv.ts";
import type { BatchNorm2d } from "./norm.ts";

export function foldedConvBn(
  conv: Conv2d | ConvTranspose2d,
  bn: BatchNorm2d,
  x: Tensor | Tensor[],
  activation: ConvActivation = "none",
): Tensor {
  const transposed = conv instanceof ConvTranspose2d;
  const { weight, bias } = foldBatchNorm(
    conv.weight,
    conv.bias,
    bn.runningMean,
    bn.runningVar,
    bn.weight,
    bn.bias,
    bn.eps,
    transposed,
  );
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
