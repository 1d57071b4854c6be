// The fused change-detection loss: class-weighted CE over valid pixels + λ·MSE to a frozen
// teacher's logits, value and gradient in one pass (kernels/cd_loss.ts). Backward only scales
// the saved gradient by the incoming scalar.

import {
  cdLossBackwardKernel,
  cdLossCountKernel,
  cdLossFinishKernel,
  cdLossMainKernel,
  cdLossPartials,
  type CdLossSpec,
  cdLossTotalKernel,
} from "../../kernels/cd_loss.ts";
import { isGradEnabled, record } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

export interface CdLossOptions {
  /** Weight of the distillation term (default 0: no teacher needed). */
  lambda?: number;
  /** Teacher logits, same shape as the student's; never gets a gradient. */
  teacher?: Tensor;
  /** CE weight of label 0 (unchanged) and label 1 (changed); default [1, 1]. */
  classWeights?: number[];
  /** Label value of ignored pixels (default 255). Every label other than 0 and 1 is ignored. */
  ignoreIndex?: number;
}

export interface CdLossResult {
  /** Scalar loss, differentiable w.r.t. the logits. */
  loss: Tensor;
  /** [B]: each image's CE mean over its valid pixels (0 if none) + λ·its MSE (no gradient). */
  perImage: Tensor;
}

/** logits [B, 1, H, W] (binary CE with logits) or [B, 2, H, W] (softmax CE); labels [B, H, W]
 * u32 with 0, 1 and the ignore value. */
export function cdLoss(logits: Tensor, labels: Tensor, opts: CdLossOptions = {}): CdLossResult {
  const { lambda = 0, teacher, classWeights = [1, 1], ignoreIndex = 255 } = opts;
  const [b, c, h, w] = logits.shape;
  if (logits.ndim !== 4 || (c !== 1 && c !== 2) || logits.dtype !== "f32") {
    throw new Error(`cdLoss: logits ${logits.describe()} must be [B, 1 or 2, H, W] f32`);
  }
  if (labels.dtype !== "u32" || labels.ndim !== 3 || labels.shape.join() !== [b, h, w].join()) {
    throw new Error(`cdLoss: labels ${labels.describe()} must be [${b}, ${h}, ${w}] u32`);
  }
  if (ignoreIndex === 0 || ignoreIndex === 1) {
    throw new Error(`cdLoss: ignoreIndex ${ignoreIndex} is a class label`);
  }
  if (classWeights.length !== 2) throw new Error("cdLoss: classWeights needs two values");
  if (!Number.isFinite(lambda)) throw new Error(`cdLoss: lambda ${lambda}`);
  if (lambda !== 0) {
    if (!teacher) throw new Error("cdLoss: lambda ≠ 0 needs a teacher tensor");
    if (teacher.shape.join() !== logits.shape.join() || teacher.dtype !== "f32") {
      throw new Error(`cdLoss: teacher ${teacher.describe()} must match ${logits.describe()}`);
    }
  }
  const spec: CdLossSpec = {
    batch: b,
    channels: c,
    pixels: h * w,
    lambda,
    weights: [classWeights[0], classWeights[1]],
    grad: logits.requiresGrad && isGradEnabled(),
  };
  const partials = cdLossPartials(spec).total;
  const inputs = [logits, labels];
  if (lambda !== 0) inputs.push(teacher!);
  const outputs: Tensor[] = [];
  let grad: Tensor | null = null;
  const scratch: Tensor[] = [];
  if (spec.grad) {
    const wpart = empty([partials]);
    const invw = empty([1]);
    run(cdLossCountKernel(spec), [labels], [wpart]);
    run(cdLossTotalKernel(spec), [wpart], [invw]);
    inputs.push(invw);
    grad = empty(logits.shape);
    outputs.push(grad);
    scratch.push(wpart, invw);
  }
  const part = empty([partials, 4]);
  outputs.push(part);
  run(cdLossMainKernel(spec), inputs, outputs);
  const loss = empty([]);
  const perImage = empty([b]);
  run(cdLossFinishKernel(spec), [part], [loss, perImage]);
  // Later dispatches reuse these buffers only after the ones above in queue order.
  for (const t of [...scratch, part]) t.dispose();
  if (grad) {
    const saved = grad;
    record(loss, [logits], "cd_loss", (g) => {
      const dz = empty(logits.shape);
      run(cdLossBackwardKernel(dz.size), [saved, g], [dz]);
      return [dz];
    });
    if (!loss.requiresGrad) saved.dispose();
  }
  return { loss, perImage };
}
