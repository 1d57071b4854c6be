// GPU augmentation of a training batch (no gradient: it runs on the data before the model).

import { AUG_PARAMS, augmentImagesKernel, augmentLabelsKernel } from "../../kernels/augment.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

export { AUG_PARAMS };

/** rawA, rawB: [B, 3, S, S] in [0, 1]; label: u32 [B, S, S]; params: f32 [B, AUG_PARAMS].
 * Returns normalised images and the label, all transformed alike. */
export function augmentBatch(
  rawA: Tensor,
  rawB: Tensor,
  label: Tensor,
  params: Tensor,
  norm: { mean: readonly [number, number, number]; std: readonly [number, number, number] },
): { a: Tensor; b: Tensor; label: Tensor } {
  const [batch, c, h, w] = rawA.shape;
  if (c !== 3 || h !== w) {
    throw new Error(`augmentBatch: needs square RGB crops, got ${rawA.describe()}`);
  }
  if (params.size !== batch * AUG_PARAMS) {
    throw new Error(`augmentBatch: params ${params.describe()} is not [${batch}, ${AUG_PARAMS}]`);
  }
  const spec = { batch, size: h, mean: norm.mean, std: norm.std };
  const a = empty(rawA.shape), b = empty(rawB.shape), l = empty(label.shape, "u32");
  run(augmentImagesKernel(spec), [rawA, rawB, params], [a, b]);
  run(augmentLabelsKernel(spec), [label, params], [l]);
  return { a, b, label: l };
}
