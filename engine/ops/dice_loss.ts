// mmseg's DiceLoss (v1.2.2) with use_sigmoid on 1-channel logits, as ChangeStar FarSeg trains:
//   p = sigmoid(z), g = one-hot target's class-0 channel, per image
//   dice = 1 − 2Σ p·g / (Σ p² + eps + Σ g² + eps), then the mean over the batch.
// With one output channel mmseg's one-hot keeps only class 0 after clamping labels to [0, 1],
// so g is the *unchanged* mask (label == 0); ignored pixels (255 → 1) have g = 0 but their p
// still counts in Σ p². Composed from differentiable ops; the target has no gradient.

import { labelMaskKernel } from "../../kernels/label_mask.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";
import { add, addScalar, div, mul, mulScalar, sigmoid, square } from "./elementwise.ts";
import { mean, sum } from "./reduce.ts";

/** f32 [B, 1, H, W] indicator of labels [B, H, W] == cls (no gradient). */
export function labelMask(labels: Tensor, cls: number): Tensor {
  const [b, h, w] = labels.shape;
  const out = empty([b, 1, h, w]);
  run(labelMaskKernel(out.size, cls), [labels], [out]);
  return out;
}

/** logits [B, 1, H, W], labels [B, H, W] u32 → scalar Dice loss (default eps 1e-3). */
export function diceLoss(logits: Tensor, labels: Tensor, eps = 1e-3): Tensor {
  const [b, c, h, w] = logits.shape;
  if (logits.ndim !== 4 || c !== 1 || logits.dtype !== "f32") {
    throw new Error(`diceLoss: logits ${logits.describe()} must be [B, 1, H, W] f32`);
  }
  if (labels.dtype !== "u32" || labels.shape.join() !== [b, h, w].join()) {
    throw new Error(`diceLoss: labels ${labels.describe()} must be [${b}, ${h}, ${w}] u32`);
  }
  const p = sigmoid(logits);
  const g = labelMask(labels, 0);
  const axes = [1, 2, 3];
  const inter = sum(mul(p, g), axes); // [B]
  const denom = addScalar(add(sum(square(p), axes), sum(g, axes)), 2 * eps);
  return addScalar(mulScalar(mean(div(inter, denom)), -2), 1);
}
