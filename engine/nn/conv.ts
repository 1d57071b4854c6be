// Conv2d and ConvTranspose2d layers (PyTorch parameter names and default initialisation).

import { conv2d, type ConvActivation, type Pair } from "../ops/conv2d.ts";
import { conv2dConcat, convTranspose2dConcat } from "../ops/conv2d_concat.ts";
import { convTranspose2d } from "../ops/conv_transpose2d.ts";
import type { Random } from "../random.ts";
import type { Tensor } from "../tensor.ts";
import { type Layer, Module, uniformInit } from "./module.ts";

export interface Conv2dConfig {
  kernel: number | [number, number];
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
  /** Fused into the kernel's write-out. */
  activation?: "none" | "relu" | "silu" | "sigmoid";
}

const pair = (v: number | [number, number]): [number, number] => Array.isArray(v) ? v : [v, v];

export class Conv2d extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly config: Conv2dConfig,
    rng: Random,
  ) {
    super();
    const groups = config.groups ?? 1;
    if (inChannels % groups || outChannels % groups) {
      throw new Error(`Conv2d ${inChannels}→${outChannels}: groups ${groups} must divide both`);
    }
    const [kh, kw] = pair(config.kernel);
    const fanIn = (inChannels / groups) * kh * kw;
    this.weight = this.param(
      "weight",
      uniformInit(rng, [outChannels, inChannels / groups, kh, kw], fanIn, "weight"),
    );
    this.bias = config.bias === false
      ? null
      : this.param("bias", uniformInit(rng, [outChannels], fanIn, "bias"));
  }

  forward(x: Tensor, activation?: ConvActivation, preluSlope?: Tensor): Tensor {
    return conv2d(x, this.weight, { ...this.#options(activation), preluSlope });
  }

  /** This conv of the channel concatenation of `parts`, without the joined tensor where the
   * routes allow (engine/ops/conv2d_concat.ts). */
  forwardConcat(parts: Tensor[], activation?: ConvActivation): Tensor {
    return conv2dConcat(parts, this.weight, this.#options(activation));
  }

  /** This conv (of `x`, or of the concatenation of its parts) where a BatchNorm in training
   * follows: the bias's gradient is exactly zero, and made so without a pass over the output
   * gradient (Conv2dOptions.biasCancelled). */
  forwardBeforeBatchNorm(x: Tensor | Tensor[]): Tensor {
    const opts = { ...this.#options(), biasCancelled: true };
    return Array.isArray(x) ? conv2dConcat(x, this.weight, opts) : conv2d(x, this.weight, opts);
  }

  #options(activation?: ConvActivation) {
    const c = this.config;
    return {
      bias: this.bias,
      stride: c.stride,
      padding: c.padding,
      dilation: c.dilation,
      groups: c.groups,
      activation: activation ?? c.activation ?? "none",
    };
  }
}

export interface ConvTranspose2dConfig {
  kernel: number;
  stride?: number;
  padding?: number;
  outputPadding?: number;
  bias?: boolean;
}

export class ConvTranspose2d extends Module implements Layer {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly config: ConvTranspose2dConfig,
    rng: Random,
  ) {
    super();
    const k = config.kernel;
    // PyTorch computes fan_in from weight.size(1) * k * k for transposed convs.
    const fanIn = outChannels * k * k;
    this.weight = this.param(
      "weight",
      uniformInit(rng, [inChannels, outChannels, k, k], fanIn, "weight"),
    );
    this.bias = config.bias === false
      ? null
      : this.param("bias", uniformInit(rng, [outChannels], fanIn, "bias"));
  }

  forward(x: Tensor): Tensor {
    return convTranspose2d(x, this.weight, this.#options());
  }

  /** This transposed conv of the channel concatenation of `parts`, without the joined tensor
   * where the routes allow (engine/ops/conv2d_concat.ts). */
  forwardConcat(parts: Tensor[]): Tensor {
    return convTranspose2dConcat(parts, this.weight, this.#options());
  }

  /** Conv2d.forwardBeforeBatchNorm's, for this transposed conv. */
  forwardBeforeBatchNorm(x: Tensor | Tensor[]): Tensor {
    const opts = { ...this.#options(), biasCancelled: true };
    return Array.isArray(x)
      ? convTranspose2dConcat(x, this.weight, opts)
      : convTranspose2d(x, this.weight, opts);
  }

  #options() {
    const c = this.config;
    return {
      bias: this.bias,
      stride: c.stride,
      padding: c.padding,
      outputPadding: c.outputPadding,
    };
  }
}
