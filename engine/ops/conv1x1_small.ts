// Launches of the small 1×1 convolution kernels (kernels/conv1x1_small.ts), no autograd: the
// conv op routes 1×1 convs with few weights here (forward, input and weight gradients), and the
// weight gradient of those with up to SMALL_WGRAD_MAX_WEIGHTS weights.

import type { ConvGeometry, Epilogue } from "../../kernels/conv2d.ts";
import {
  mixKernel,
  small1x1Shape,
  smallWgradKernel,
  smallWgradShape,
  smallWgradSplits,
} from "../../kernels/conv1x1_small.ts";
import { splitReduceKernel } from "../../kernels/conv2d_wgrad.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

/** A 1×1 conv (stride 1, no padding, one group) with at most SMALL_1X1_MAX_WEIGHTS weights. */
export function small1x1Fits(g: ConvGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.strideY === 1 && g.strideX === 1 && g.padY === 0 &&
    g.padX === 0 && g.groups === 1 && small1x1Shape(g.ci, g.co);
}

/** A 1×1 conv (stride 1, no padding, one group) with at most SMALL_WGRAD_MAX_WEIGHTS weights:
 * small1x1WeightGradRaw takes its weight gradient. */
export function smallWgradFits(g: ConvGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.strideY === 1 && g.strideX === 1 && g.padY === 0 &&
    g.padX === 0 && g.groups === 1 && smallWgradShape(g.ci, g.co);
}

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
