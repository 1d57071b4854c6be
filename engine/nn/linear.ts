// Linear layer on the last axis: y = x·Wᵀ + b with W [out, in] as PyTorch stores it.

import { matmul } from "../ops/matmul.ts";
import type { Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { type Layer, Module, uniformInit } from "./module.ts";

export class Linear extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, rng: Random, bias = true) {
    super();
    this.weight = this.param(
      "weight",
      uniformInit(rng, [outFeatures, inFeatures], inFeatures, "weight"),
    );
    this.bias = bias
      ? this.param("bias", uniformInit(rng, [outFeatures], inFeatures, "bias"))
      : null;
  }

  forward(x: Tensor, activation?: "relu"): Tensor {
    return matmul(x, this.weight, { transB: true, bias: this.bias ?? undefined, activation });
  }
}
