// Soft O-P routing: an image whose predicted CAR lies near a threshold is scored on the mean of
// the two neighbouring teachers' change probabilities. The mean is wrapped as one detector whose
// logits give back that probability, so evaluation (batching, sliding windows, ignored pixels,
// the model's threshold) runs exactly as for a single model.

import { Module } from "../engine/nn/module.ts";
import { add, map, mulScalar } from "../engine/ops/elementwise.ts";
import type { Tensor } from "../engine/tensor.ts";
import type { ChangeDetector } from "../models/model.ts";
import { changeProbability } from "./predict.ts";

/** Keeps the logit finite: a probability of exactly 0 or 1 would give ±∞ (any threshold in
 * (1e-7, 1 − 1e-7) decides the same). WGSL literals. */
const EDGE = ["1e-7", "0.9999999"];

/** The mean of the members' change probabilities, as sigmoid-form logits [B, 1, H, W]. The
 * members stay owned by the caller (dispose them, not this). */
export class AveragedDetector extends Module implements ChangeDetector {
  constructor(private readonly members: ChangeDetector[]) {
    super();
    if (members.length === 0) throw new Error("AveragedDetector: no members");
    members.forEach((m, i) => this.child(`m${i}`, m));
  }

  forward(a: Tensor, b: Tensor): Tensor {
    const sum = this.members.map((m) => changeProbability(m.forward(a, b))).reduce((p, q) =>
      add(p, q)
    );
    const mean = mulScalar(sum, 1 / this.members.length);
    const p = `clamp(a, ${EDGE[0]}, ${EDGE[1]})`;
    return map("prob_logit", `log(${p} / (1.0 - ${p}))`, [mean]);
  }

  override dispose(): void {
    // The members belong to the caller.
  }
}
