// What every change-detection model offers to the trainer and the commands.

import type { Module } from "../engine/nn/module.ts";
import type { Tensor } from "../engine/tensor.ts";

/** Receives named intermediate tensors of a forward pass (parity tests compare them with the
 * original code's; the model owns the tensor, a tap that keeps one must `keep()` it). */
export type Tap = (name: string, t: Tensor) => void;

export interface ChangeDetector extends Module {
  /** Images A and B, [B, 3, H, W], normalised as the registry entry says. Returns change
   * logits: [B, 1, H, W] (sigmoid form) or [B, 2, H, W] (softmax form), before any activation.
   * Models that document intermediate features report them to `tap`. */
  forward(a: Tensor, b: Tensor, tap?: Tap): Tensor;
  /** The configured training loss's terms beyond CE / BCE of the returned logits (deep
   * supervision, auxiliary heads), from the outputs of the last training-mode forward, for the
   * labels [B, H, W] u32; the trainer adds this scalar to the logits' loss. Models whose loss
   * is the logits' CE alone leave it out. */
  auxLoss?(labels: Tensor): Tensor;
  /** The whole training loss, for a model whose logits are not what it trains: STANet's are a
   * thresholded ±100 decision with no gradient, and it trains BCL on the distance map behind
   * them. From the last forward (same scope), for labels [B, H, W] u32; replaces CE / BCE of the
   * logits and auxLoss. With MTKD, `distill.teacher` is the teacher's `distillTarget`. */
  loss?(labels: Tensor, distill?: { lambda: number; teacher: Tensor }): Tensor;
  /** What this model hands a student as MTKD teacher when that is not its logits (STANet: the
   * distance map, the decode head's output upstream); runs a forward. */
  distillTarget?(a: Tensor, b: Tensor): Tensor;
}
