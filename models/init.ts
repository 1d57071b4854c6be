// Initialisers the upstream model code applies after construction (mmengine / torchvision), shared
// by the models that use them.

import type { Conv2d } from "../engine/nn/conv.ts";
import type { Random } from "../engine/random.ts";
import { write } from "../engine/tensor.ts";

/** kaiming_normal_(mode="fan_out", nonlinearity="relu"): weight N(0, 2 / (out channels · kernel
 * area)), not divided by groups (PyTorch's fan_out of a [co, ci/g, kh, kw] weight); the bias set
 * to 0 unless `keepBias` (Open-CD's SNUNet leaves PyTorch's default bias). */
export function kaimingFanOut<C extends Conv2d>(
  conv: C,
  rng: Random,
  o: { keepBias?: boolean } = {},
): C {
  const [co, , kh, kw] = conv.weight.shape;
  write(conv.weight, rng.normal(conv.weight.size, Math.sqrt(2 / (co * kh * kw))));
  if (conv.bias && !o.keepBias) write(conv.bias, new Float32Array(conv.bias.size));
  return conv;
}
