// STANet's batch-balanced contrastive loss (Open-CD's BCLLoss, kernels/bcl_loss.ts): pulls the
// feature distance of unchanged pixels to 0 and pushes changed ones beyond the margin, each class
// averaged over its own pixel count so that the rare changed class weighs as much as the rest.

import {
  bclBackwardKernel,
  bclFinishKernel,
  bclPartialKernel,
  bclPartials,
  type BclSpec,
} from "../../kernels/bcl_loss.ts";
import { record } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

export interface BclOptions {
  /** Default 2 (STANet's configs). */
  margin?: number;
  /** Added to both pixel counts. Default 255: Open-CD's BCLLoss.forward passes its ignore_index
   * (255) positionally into bcl_loss's eps slot; reproduced so that losses match upstream's. */
  eps?: number;
}

/** Distance d [B, 1, H, W] (or [B, H, W]), labels [B, H, W] u32 (0, 1, other = ignored) → the
 * scalar loss, differentiable in d. */
export function bclLoss(d: Tensor, labels: Tensor, opts: BclOptions = {}): Tensor {
  const { margin = 2, eps = 255 } = opts;
  const [b, h, w] = labels.shape;
  if (labels.dtype !== "u32" || labels.ndim !== 3) {
    throw new Error(`bclLoss: labels ${labels.describe()} must be [B, H, W] u32`);
  }
  if (d.dtype !== "f32" || d.size !== b * h * w || (d.ndim === 4 && d.shape[1] !== 1)) {
    throw new Error(`bclLoss: distance ${d.describe()} must be [${b}, 1, ${h}, ${w}] f32`);
  }
  if (!(margin > 0) || !(eps >= 0)) throw new Error(`bclLoss: margin ${margin}, eps ${eps}`);
  const spec: BclSpec = { n: d.size, margin, eps };
  const part = empty([bclPartials(spec.n), 4]);
  const loss = empty([]);
  const scale = empty([2]);
  run(bclPartialKernel(spec), [d, labels], [part]);
  run(bclFinishKernel(spec), [part], [loss, scale]);
  part.dispose();
  record(loss, [d], "bcl_loss", (g) => {
    const dd = empty(d.shape);
    run(bclBackwardKernel(spec), [d, labels, scale, g], [dd]);
    return [dd];
  });
  if (!loss.requiresGrad) scale.dispose();
  return loss;
}
