// What every change-detection model offers to the trainer and the commands.

import type { Module } from "../engine/nn/module.ts";
import type { Tensor } from "../engine/tensor.ts";

export interface ChangeDetector extends Module {
  /** Images A and B, [B, 3, H, W], normalised as the registry entry says. Returns change
   * logits: [B, 1, H, W] (sigmoid form) or [B, 2, H, W] (softmax form), before any activation. */
  forward(a: Tensor, b: Tensor): Tensor;
}
