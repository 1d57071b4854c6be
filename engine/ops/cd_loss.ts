// The fused change-detection loss: class-weighted CE over valid pixels + λ·MSE to a frozen
// teacher's logits, value and gradient in one pass (kernels/cd_loss.ts). Backward only scales
// the saved gradient by the incoming scalar. With `ohem`, mmseg's OHEMPixelSampler chooses the
// pixels on the GPU first (kernels/ohem.ts) and the CE is Σ CE·kept / (B·H·W), as Open-CD's
// Changer recipe trains.

import {
  cdLossBackwardKernel,
  cdLossCountKernel,
  cdLossFinishKernel,
  cdLossMainKernel,
  cdLossPartials,
  type CdLossSpec,
  cdLossTotalKernel,
} from "../../kernels/cd_loss.ts";
import {
  OHEM_STATE_WORDS,
  ohemGroups,
  ohemHistKernel,
  ohemProbKernel,
  ohemScanKernel,
  ohemSetupKernel,
  type OhemSpec,
} from "../../kernels/ohem.ts";
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
  /** OHEM as mmseg's OHEMPixelSampler (2-channel logits only): keep a valid pixel when its
   * true-class probability p < max(sorted(p)[min(minKept·B, nValid − 1)], thresh). */
  ohem?: OhemOptions;
}

export interface OhemOptions {
  thresh: number;
  /** Per image (mmseg's min_kept). */
  minKept: number;
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
  const { lambda = 0, teacher, classWeights = [1, 1], ignoreIndex = 255, ohem } = opts;
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
  if (ohem && c !== 2) {
    throw new Error(
      `cdLoss: OHEM needs 2-channel softmax logits, got ${logits.describe()}: drop the ohem option for 1-channel models`,
    );
  }
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
    ohem: !!ohem,
  };
  const partials = cdLossPartials(spec).total;
  const inputs = [logits, labels];
  if (lambda !== 0) inputs.push(teacher!);
  const outputs: Tensor[] = [];
  let grad: Tensor | null = null;
  const scratch: Tensor[] = [];
  if (ohem) {
    const o: OhemSpec = { batch: b, pixels: h * w, thresh: ohem.thresh, minKept: ohem.minKept };
    const { prob, state } = ohemThreshold(logits, labels, o);
    inputs.push(prob, state);
    scratch.push(prob, state);
  } else if (spec.grad) {
    const wpart = empty([partials]);
    const invw = empty([1]);
    run(cdLossCountKernel(spec), [labels], [wpart]);
    run(cdLossTotalKernel(spec), [wpart], [invw]);
    inputs.push(invw);
    scratch.push(wpart, invw);
  }
  if (spec.grad) {
    grad = empty(logits.shape);
    outputs.push(grad);
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

/** The OHEM threshold on the GPU (no gradient, no readback): per-pixel p and the state whose
 * word 3 is the threshold's f32 bits (see kernels/ohem.ts). Exported for tests. */
export function ohemThreshold(
  logits: Tensor,
  labels: Tensor,
  o: OhemSpec,
): { prob: Tensor; state: Tensor } {
  const prob = empty([o.batch * o.pixels]);
  const counts = empty([ohemGroups(o), 2], "u32");
  const state = empty([OHEM_STATE_WORDS], "u32");
  run(ohemProbKernel(o), [logits, labels], [prob, counts]);
  run(ohemSetupKernel(o), [counts], [state]);
  for (let d = 0; d < 4; d++) {
    run(ohemHistKernel(o, d), [prob], [state]);
    run(ohemScanKernel(d), [], [state]);
  }
  counts.dispose();
  return { prob, state };
}
