// Softmax and log-softmax along any axis (max-subtracted, so large logits do not overflow).
// Backward needs only the output: softmax dx = y ⊙ (g − Σ g⊙y), log-softmax dx = g − eᵞ Σ g.

import { prod } from "../../kernels/common.ts";
import { softmaxBackwardKernel, softmaxKernel, type SoftmaxSpec } from "../../kernels/softmax.ts";
import { record } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

function specOf(x: Tensor, axis: number, log: boolean): SoftmaxSpec {
  const a = axis < 0 ? axis + x.ndim : axis;
  if (a < 0 || a >= x.ndim) {
    throw new Error(`softmax: axis ${axis} out of range for ${x.describe()}`);
  }
  return {
    outer: prod(x.shape.slice(0, a)),
    n: x.shape[a],
    inner: prod(x.shape.slice(a + 1)),
    log,
  };
}

function softmaxOp(x: Tensor, axis: number, log: boolean): Tensor {
  if (x.dtype !== "f32") throw new Error(`softmax of ${x.describe()}: needs f32`);
  const spec = specOf(x, axis, log);
  const y = empty(x.shape);
  run(softmaxKernel(spec), [x], [y]);
  const name = log ? "log_softmax" : "softmax";
  return record(y, [x], name, (g) => {
    const dx = empty(x.shape);
    run(softmaxBackwardKernel(spec), [y, g], [dx]);
    return [dx];
  });
}

/** exp(x) / Σ exp(x) along `axis` (default the last). */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxOp(x, axis, false);
}

/** x − log Σ exp(x) along `axis` (default the last). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxOp(x, axis, true);
}
