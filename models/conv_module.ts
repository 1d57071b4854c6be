// mmcv's ConvModule as the Open-CD heads use it: conv (no bias when a norm follows) → BatchNorm
// (eps 1e-5) → ReLU, named `conv` / `bn`. Seeded creation follows ConvModule.init_weights:
// kaiming_normal (fan_out, ReLU gain) on the conv, bias 0, BN weight 1 and bias 0. Built on
// ConvBnAct, so training fuses the ReLU into the BN and eval folds the BN into the conv.

import { ConvBnAct } from "../engine/nn/conv_bn_act.ts";
import { Conv2d } from "../engine/nn/conv.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import type { Random } from "../engine/random.ts";
import { kaimingFanOut } from "./init.ts";

export interface ConvModuleOptions {
  padding?: number;
  stride?: number;
  /** Default true; without it the conv has a bias and nothing follows but the activation. */
  norm?: boolean;
  /** Default true. */
  relu?: boolean;
}

export function convModule(
  cin: number,
  cout: number,
  kernel: number,
  rng: Random,
  o: ConvModuleOptions = {},
): ConvBnAct {
  const norm = o.norm ?? true;
  const conv = kaimingFanOut(
    new Conv2d(cin, cout, { kernel, padding: o.padding ?? 0, stride: o.stride, bias: !norm }, rng),
    rng,
  );
  return new ConvBnAct({
    conv: ["conv", conv],
    bn: norm ? ["bn", new BatchNorm2d(cout)] : undefined,
    act: (o.relu ?? true) ? "relu" : "none",
  });
}
