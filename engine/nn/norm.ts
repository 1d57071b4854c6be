// Normalisation layers: BatchNorm2d (running statistics as buffers, PyTorch names including
// num_batches_tracked), InstanceNorm2d and LayerNorm.

import { layerNorm } from "../ops/layer_norm.ts";
import { batchNorm2d, instanceNorm2d, type NormPostOptions } from "../ops/norm.ts";
import { full, type Tensor, tensor } from "../tensor.ts";
import { type Layer, Module } from "./module.ts";

export class BatchNorm2d extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly runningMean: Tensor;
  readonly runningVar: Tensor;
  constructor(readonly channels: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.param("weight", full([channels], 1));
    this.bias = this.param("bias", full([channels], 0));
    this.runningMean = this.buffer("running_mean", full([channels], 0));
    this.runningVar = this.buffer("running_var", full([channels], 1));
    // Saved for checkpoint compatibility; the momentum form never reads it.
    this.buffer("num_batches_tracked", tensor([0], [], "i32"));
  }

  /** `post` fuses a ReLU (and Dropout2d) or a SiLU into the same passes, forward and
   * backward. */
  forward(x: Tensor, post?: NormPostOptions): Tensor {
    return batchNorm2d(x, {
      weight: this.weight,
      bias: this.bias,
      runningMean: this.runningMean,
      runningVar: this.runningVar,
      training: this.training,
      momentum: this.momentum,
      eps: this.eps,
      post,
    });
  }
}

/** Per-sample statistics in training and eval alike (PyTorch's default: no affine, no running
 * statistics). */
export class InstanceNorm2d extends Module implements Layer {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  constructor(readonly channels: number, readonly eps = 1e-5, affine = false) {
    super();
    this.weight = affine ? this.param("weight", full([channels], 1)) : null;
    this.bias = affine ? this.param("bias", full([channels], 0)) : null;
  }

  forward(x: Tensor): Tensor {
    return instanceNorm2d(x, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}

export class LayerNorm extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly features: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param("weight", full([features], 1));
    this.bias = this.param("bias", full([features], 0));
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, { weight: this.weight, bias: this.bias, eps: this.eps });
  }
}
