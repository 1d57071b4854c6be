// Eval-mode conv → BatchNorm (→ activation) as one convolution: the BN's running statistics
// folded into the conv's weight and bias, the activation fused into its write-out. No autograd.

import { conv2d, type ConvActivation, foldBatchNorm } from "../ops/conv2d.ts";
import { convTranspose2d } from "../ops/conv_transpose2d.ts";
import type { Tensor } from "../tensor.ts";
import { Conv2d, ConvTranspose2d } from "./conv.ts";
import type { BatchNorm2d } from "./norm.ts";

export function foldedConvBn(
  conv: Conv2d | ConvTranspose2d,
  bn: BatchNorm2d,
  x: Tensor,
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
  return conv instanceof ConvTranspose2d
    ? convTranspose2d(x, weight, { ...opts, outputPadding: conv.config.outputPadding })
    : conv2d(x, weight, { ...opts, dilation: conv.config.dilation, groups: conv.config.groups });
}
