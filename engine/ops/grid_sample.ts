// Bilinear sampling of images at given points (PyTorch's grid_sample with align_corners=True
// and zero padding), differentiable w.r.t. both the image and the grid.

import { fillKernel } from "../../kernels/elementwise.ts";
import {
  gridSampleGradGridKernel,
  gridSampleGradInputKernel,
  gridSampleKernel,
  type GridSampleSpec,
} from "../../kernels/grid_sample.ts";
import { record } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

/** x [B, C, H, W] sampled at grid [B, Ho, Wo, 2] ((x, y) in [-1, 1], -1 = centre of the first
 * pixel, 1 = centre of the last) → [B, C, Ho, Wo]; points outside read zeros. The gradient
 * w.r.t. x is summed with atomics, so its last bits may vary from run to run. */
export function gridSample(x: Tensor, grid: Tensor): Tensor {
  const [batch, channels, h, w] = x.shape;
  const [gb, outH, outW, two] = grid.shape;
  if (x.ndim !== 4 || grid.ndim !== 4 || gb !== batch || two !== 2) {
    throw new Error(
      `gridSample: x ${x.describe()} needs grid [${batch}, Ho, Wo, 2], got ${grid.describe()}`,
    );
  }
  const spec: GridSampleSpec = { batch, channels, h, w, outH, outW };
  const out = empty([batch, channels, outH, outW]);
  run(gridSampleKernel(spec), [x, grid], [out]);
  return record(out, [x, grid], "grid_sample", (g) => {
    let dx: Tensor | null = null, dgrid: Tensor | null = null;
    if (x.requiresGrad) {
      dx = empty(x.shape);
      run(fillKernel(dx.size, 0), [], [dx]);
      run(gridSampleGradInputKernel(spec), [grid, g], [dx]);
    }
    if (grid.requiresGrad) {
      dgrid = empty(grid.shape);
      run(gridSampleGradGridKernel(spec), [x, grid, g], [dgrid]);
    }
    return [dx, dgrid];
  });
}
