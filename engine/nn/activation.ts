// Activation layers. Only PReLU has parameters; the others are here so Sequential containers
// read like their PyTorch counterparts.

import { gelu, prelu, silu } from "../ops/activation.ts";
import { relu, sigmoid, tanh } from "../ops/elementwise.ts";
import { full, type Tensor } from "../tensor.ts";
import { type Layer, Module } from "./module.ts";

/** PReLU with one shared slope (PyTorch's default) or one per channel; slope starts at 0.25. */
export class PReLU extends Module implements Layer {
  readonly weight: Tensor;
  constructor(channels = 1, init = 0.25) {
    super();
    this.weight = this.param("weight", full([channels], init));
  }
  forward(x: Tensor): Tensor {
    return prelu(x, this.weight);
  }
}

class Fn extends Module implements Layer {
  constructor(readonly fn: (x: Tensor) => Tensor) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.fn(x);
  }
}

export const ReLU = () => new Fn(relu);
export const SiLU = () => new Fn(silu);
export const GELU = () => new Fn(gelu);
export const Sigmoid = () => new Fn(sigmoid);
export const Tanh = () => new Fn(tanh);
