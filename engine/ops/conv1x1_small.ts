// Launches of the small 1×1 convolution kernels (kernels/conv1x1_small.ts), no autograd: the
// planner (kernels/conv_plan.ts: small1x1Fits, smallWgradFits) routes 1×1 convs with few weights
// here (forward, input and weight gradients), and the weight gradient of somewhat larger ones.

import type { ConvGeometry, Epilogue } from "../../kernels/conv2d.ts";
import { mixKernel, smallWgradKernel, smallWgradSplits } from "../../kernels/conv1x1_small.ts";
import { splitReduceKernel } from "../../kernels/conv2d_wgrad.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

function dims(g: ConvGeometry) {
  return { batch: g.batch, ci: g.ci, co: g.co, pixels: g.h * g.w };
}

/** Forward ("forward": x → [B, Co, H, W]) or input gradient ("dgrad": dy → [B, Ci, H, W]),
 * with the epilogue over the channels written (and the pre-activation when it saves it). */
export function small1x1MixRaw(
  g: ConvGeometry,
  mode: "forward" | "dgrad",
  input: Tensor,
  w: Tensor,
  ep: Epilogue,
  extra: Tensor[] = [],
): { y: Tensor; pre: Tensor | null } {
  const shape = [g.batch, mode === "forward" ? g.co : g.ci, g.h, g.w];
  const y = empty(shape);
  const pre = ep.savePre ? empty(shape) : null;
  run(mixKernel({ ...dims(g), mode, epilogue: ep }), [input, w, ...extra], pre ? [y, pre] : [y]);
  return { y, pre };
}

/** Weight gradient [Co, Ci, 1, 1] (and the bias's [Co]): per-workgroup partials, then the conv
 * weight gradient's split reduce. */
export function small1x1WeightGradRaw(
  g: ConvGeometry,
  x: Tensor,
  dy: Tensor,
  withBias: boolean,
): { dw: Tensor; db: Tensor | null } {
  const d = dims(g);
  const { splits, chunk } = smallWgradSplits(d);
  const part = empty([splits, g.co, g.ci + (withBias ? 1 : 0)]);
  run(smallWgradKernel({ ...d, bias: withBias, splits, chunk }), [x, dy], [part]);
  const dw = empty([g.co, g.ci, 1, 1]);
  const db = withBias ? empty([g.co]) : null;
  run(
    splitReduceKernel({ splits, co: g.co, cols: g.ci, bias: withBias }),
    [part],
    db ? [dw, db] : [dw],
  );
  part.dispose();
  return { dw, db };
}
