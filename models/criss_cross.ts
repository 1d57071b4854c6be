// mmcv's CrissCrossAttention (pure PyTorch since mmcv 1.3.13, mmcv/ops/cc_attention.py): 1×1
// query and key convs to C/8 channels and a value conv C → C, all with bias; each pixel attends
// to its column and its row under one softmax (engine/ops/criss_cross.ts); the result is scaled
// by the learnt scalar γ (mmcv `Scale`, initialised to 0) and added to the input. Names follow
// mmcv: query_conv, key_conv, value_conv, gamma.scale.

import { Conv2d } from "../engine/nn/conv.ts";
import { type Layer, Module } from "../engine/nn/module.ts";
import { crissCrossAttention } from "../engine/ops/criss_cross.ts";
import { add, mul } from "../engine/ops/elementwise.ts";
import type { Random } from "../engine/random.ts";
import { full, type Tensor } from "../engine/tensor.ts";

/** mmcv's Scale: one learnt scalar (shape []) multiplying its input. */
export class Scale extends Module {
  readonly scale: Tensor;
  constructor(init: number) {
    super();
    this.scale = this.param("scale", full([], init));
  }
}

export class CrissCrossAttention extends Module implements Layer {
  readonly query: Conv2d;
  readonly key: Conv2d;
  readonly value: Conv2d;
  readonly gamma: Scale;
  constructor(channels: number, rng: Random) {
    super();
    const c8 = Math.floor(channels / 8);
    this.query = this.child("query_conv", new Conv2d(channels, c8, { kernel: 1 }, rng));
    this.key = this.child("key_conv", new Conv2d(channels, c8, { kernel: 1 }, rng));
    this.value = this.child("value_conv", new Conv2d(channels, channels, { kernel: 1 }, rng));
    this.gamma = this.child("gamma", new Scale(0));
  }

  forward(x: Tensor): Tensor {
    const out = crissCrossAttention(
      this.query.forward(x),
      this.key.forward(x),
      this.value.forward(x),
    );
    return add(mul(this.gamma.scale, out), x);
  }
}
