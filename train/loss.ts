// A model's training loss from its forward's logits: its own `loss` where it has one (STANet:
// BCL on the distance map behind its ±100 logits), else CE / BCE of the logits (cdLoss, with
// MTKD's λ·MSE to the teacher and the recipe's OHEM) plus the model's auxiliary terms.

import { cdLoss, type OhemOptions } from "../engine/ops/cd_loss.ts";
import { add } from "../engine/ops/elementwise.ts";
import type { Tensor } from "../engine/tensor.ts";
import type { ChangeDetector } from "../models/model.ts";

export interface TrainingLossOptions {
  /** MTKD: λ and the teacher's output for the same inputs (its logits or distillTarget). */
  distill?: { lambda: number; teacher: Tensor };
  ohem?: OhemOptions;
}

export function trainingLoss(
  model: ChangeDetector,
  logits: Tensor,
  labels: Tensor,
  opts: TrainingLossOptions = {},
): Tensor {
  if (model.loss) return model.loss(labels, opts.distill);
  const { loss } = cdLoss(logits, labels, {
    lambda: opts.distill?.lambda ?? 0,
    teacher: opts.distill?.teacher,
    ohem: opts.ohem,
  });
  return model.auxLoss ? add(loss, model.auxLoss(labels)) : loss;
}
