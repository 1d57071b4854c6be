// ConvBnAct: one module owns a convolution, its BatchNorm, its activation (and a Dropout2d after a
// ReLU, or an InstanceNorm after the activation as TinyCD has it), and decides how they run, so
// models only say which layers follow which:
//   training, with BatchNorm: conv, then the BN with the ReLU (+ Dropout2d) or SiLU fused into its
//     passes, forward and backward (batchNorm2d's `post`); the BN's batch mean removes the conv's
//     bias, so its gradient is exactly zero and no pass sums it (forwardBeforeBatchNorm);
//   training and eval, no BatchNorm: the activation (ReLU, SiLU, PReLU) fused into the conv's
//     write-out;
//   eval, with BatchNorm: the BN's running statistics folded into the conv's weight and bias and
//     the activation fused into its write-out, one kernel (`foldInEval`, on by default).
// It adds no level to parameter names: its parts are registered under the names the model passes,
// and the model registers the module either as a child (where the original code has that level,
// e.g. torchvision's Conv2dNormActivation "0"/"1") or with Module.inline (its names join the
// model's, e.g. FC-Siam's conv11/bn11). The Dropout2d is a child, so it follows train()/eval().

import type { ConvActivation } from "../ops/conv2d.ts";
import type { NormPostOptions } from "../ops/norm.ts";
import type { Tensor } from "../tensor.ts";
import { PReLU } from "./activation.ts";
import { Conv2d, ConvTranspose2d } from "./conv.ts";
import { Dropout2d } from "./dropout.ts";
import { type EvalFolding, foldedConvBn, foldsNow } from "./fold.ts";
import { type Layer, Module } from "./module.ts";
import { BatchNorm2d, InstanceNorm2d } from "./norm.ts";

/** A part and the state_dict name it is registered under. */
export type Named<M> = [name: string, module: M];

export interface ConvBnActParts {
  conv: Named<Conv2d | ConvTranspose2d>;
  /** Between the conv and the activation; folded into the conv in eval. */
  bn?: Named<BatchNorm2d>;
  /** Default "none". A PReLU (which has a parameter, hence a name) only without `bn`. */
  act?: "none" | "relu" | "silu" | Named<PReLU>;
  /** Dropout2d probability after the ReLU (needs `bn` and act "relu"). */
  dropout?: number;
  /** After the activation (TinyCD: conv → PReLU → InstanceNorm). */
  normAfter?: Named<InstanceNorm2d>;
}

export class ConvBnAct extends Module implements Layer, EvalFolding {
  readonly conv: Conv2d | ConvTranspose2d;
  readonly bn: BatchNorm2d | null;
  readonly act: "none" | "relu" | "silu" | PReLU;
  readonly dropout: Dropout2d | null;
  readonly normAfter: InstanceNorm2d | null;
  /** Fold the BatchNorm into the conv in eval (off only to compare with the unfolded form). */
  foldInEval = true;

  constructor(parts: ConvBnActParts) {
    super();
    const { conv, bn, act = "none", dropout, normAfter } = parts;
    // Registered in the order the original code declares them: conv, norm, activation, norm.
    this.conv = this.child(conv[0], conv[1]);
    this.bn = bn ? this.child(bn[0], bn[1]) : null;
    this.act = typeof act === "string" ? act : this.child(act[0], act[1]);
    this.normAfter = normAfter ? this.child(normAfter[0], normAfter[1]) : null;
    // No parameters: its name never reaches the state_dict.
    this.dropout = dropout === undefined ? null : this.child("dropout", new Dropout2d(dropout));
    const where = `ConvBnAct ${conv[0]}`;
    if (this.dropout && (!this.bn || this.act !== "relu")) {
      throw new Error(`${where}: Dropout2d is fused after a BatchNorm and a ReLU only`);
    }
    if (this.act instanceof PReLU && this.bn) {
      throw new Error(`${where}: PReLU after a BatchNorm is not supported`);
    }
    if (!this.bn && this.act !== "none" && this.conv instanceof ConvTranspose2d) {
      throw new Error(`${where}: a transposed conv fuses no activation without a BatchNorm`);
    }
  }

  /** x, or the parts of a channel concatenation that the conv reads without joining them where
   * its routes allow (engine/ops/conv2d_concat.ts). */
  forward(x: Tensor | Tensor[]): Tensor {
    const y = this.bn ? this.#convBn(x, this.bn) : this.#convAct(x);
    return this.normAfter ? this.normAfter.forward(y) : y;
  }

  #conv(x: Tensor | Tensor[], act?: ConvActivation): Tensor {
    const conv = this.conv;
    if (!Array.isArray(x)) {
      return conv instanceof ConvTranspose2d ? conv.forward(x) : conv.forward(x, act);
    }
    return conv instanceof ConvTranspose2d ? conv.forwardConcat(x) : conv.forwardConcat(x, act);
  }

  /** conv → BN → activation: fused into the BN's passes, or folded into the conv in eval. */
  #convBn(x: Tensor | Tensor[], bn: BatchNorm2d): Tensor {
    const act = this.act as "none" | "relu" | "silu";
    // The fold is not differentiable: an eval forward with gradients (parity tests, the
    // configured loss in eval mode) runs the two layers.
    if (foldsNow(bn, this.foldInEval)) {
      return foldedConvBn(this.conv, bn, x, act);
    }
    const y = bn.training ? this.conv.forwardBeforeBatchNorm(x) : this.#conv(x);
    return bn.forward(y, this.#post(act));
  }

  #post(act: "none" | "relu" | "silu"): NormPostOptions | undefined {
    if (act === "silu") return { activation: "silu" };
    if (act === "relu") return { dropout: this.dropout?.nextMask() };
    return undefined;
  }

  /** conv with the activation in its write-out (a PReLU's slope is its parameter). */
  #convAct(x: Tensor | Tensor[]): Tensor {
    const conv = this.conv;
    if (this.act instanceof PReLU) {
      if (Array.isArray(x)) throw new Error("ConvBnAct: a PReLU conv takes one input tensor");
      return (conv as Conv2d).forward(x, "prelu", this.act.weight);
    }
    if (conv instanceof ConvTranspose2d) return this.#conv(x);
    return this.#conv(x, this.act === "none" ? undefined : this.act as ConvActivation);
  }
}

/** Turn eval-mode folding on or off in every module under `root` that folds (ConvBnAct, and the
 * blocks of engine/nn/fold.ts EvalFolding; tests compare the two). */
export function setEvalFolding(root: Module, on: boolean): void {
  if ("foldInEval" in root) (root as Module & EvalFolding).foldInEval = on;
  for (const [, c] of root.children()) setEvalFolding(c, on);
}
