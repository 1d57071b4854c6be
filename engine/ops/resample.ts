// Resizing of NCHW images (any tensor: the last two axes are resized) with PyTorch's
// F.interpolate semantics for "bilinear" and "nearest".

import { prod } from "../../kernels/common.ts";
import {
  resampleGradKernel,
  resampleKernel,
  type ResampleMode,
  type ResampleSpec,
} from "../../kernels/resample.ts";
import { record, ruleIgnoresOutput } from "../autograd.ts";
import { type Operand, run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

export type { ResampleMode };

export interface InterpolateOptions {
  /** Output [h, w]; give this or `scale`. */
  size?: readonly [number, number];
  /** Scale factor (one for both axes, or [h, w]): output = floor(input · scale), and as in
   * PyTorch the source coordinates then use 1/scale (not in/out) unless alignCorners. */
  scale?: number | readonly [number, number];
  mode: ResampleMode;
  /** Bilinear only (PyTorch rejects it for nearest). Default false. */
  alignCorners?: boolean;
}

export function interpolate(x: Tensor, opts: InterpolateOptions): Tensor {
  if (x.ndim < 2) throw new Error(`interpolate: ${x.describe()} needs ≥ 2 axes`);
  if ((opts.size === undefined) === (opts.scale === undefined)) {
    throw new Error("interpolate: give exactly one of size and scale");
  }
  const alignCorners = opts.alignCorners ?? false;
  if (alignCorners && opts.mode === "nearest") {
    throw new Error("interpolate: alignCorners only applies to bilinear");
  }
  const [inH, inW] = x.shape.slice(-2);
  const scale = typeof opts.scale === "number" ? [opts.scale, opts.scale] as const : opts.scale;
  const [outH, outW] = opts.size ?? [Math.floor(inH * scale![0]), Math.floor(inW * scale![1])];
  if (!(Number.isInteger(outH) && Number.isInteger(outW) && outH >= 1 && outW >= 1)) {
    throw new Error(`interpolate: output size ${outH}×${outW} from ${x.describe()}`);
  }
  const spec: ResampleSpec = {
    planes: prod(x.shape.slice(0, -2)),
    inH,
    inW,
    outH,
    outW,
    mode: opts.mode,
    alignCorners,
    scale,
  };
  const out = empty([...x.shape.slice(0, -2), outH, outW]);
  // Also the recipe for `out` (Tensor.evict), from x, which outlives out's backward readers;
  // the rule reads no output (ruleIgnoresOutput). An upsampled map that only a conv reads (its
  // weight gradient does) can go after the forward and cost one resample in the backward.
  const resample = (o: Operand) => run(resampleKernel(spec), [x], [o]);
  resample(out);
  return ruleIgnoresOutput(record(
    out,
    [x],
    `interpolate_${opts.mode}`,
    (g) => {
      const dx = empty(x.shape);
      run(resampleGradKernel(spec), [g], [dx]);
      return [dx];
    },
    resample,
  ));
}
