// Pooling over NCHW with backward: max (the gradient goes to the stored argmax), average, and
// adaptive pooling (global pooling being output 1; PyTorch's overlapping bins where the output
// size does not divide the input).

import {
  avgPool2dGradKernel,
  avgPool2dKernel,
  type AvgPool2dSpec,
  globalMaxPoolKernel,
  maxPool2dGradKernel,
  maxPool2dKernel,
  type Pool2dSpec,
  pooledShape,
} from "../../kernels/pool.ts";
import { isGradEnabled, record, ruleIgnoresOutput } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Tensor, tensor } from "../tensor.ts";
import { matmul } from "./matmul.ts";
import { mean } from "./reduce.ts";

type Pair = number | [number, number];

export interface Pool2dOptions {
  kernel: Pair;
  /** Defaults to the kernel size. */
  stride?: Pair;
  padding?: Pair;
  ceilMode?: boolean;
}

export interface AvgPool2dOptions extends Pool2dOptions {
  /** Count padding in the divisor (PyTorch's default: true). */
  countIncludePad?: boolean;
}

const pair = (v: Pair): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [v, v]);

function poolSpec(x: Tensor, o: Pool2dOptions): Pool2dSpec {
  if (x.ndim !== 4) throw new Error(`pool2d needs [B, C, H, W], got ${x.describe()}`);
  const kernel = pair(o.kernel);
  return {
    batch: x.shape[0],
    channels: x.shape[1],
    height: x.shape[2],
    width: x.shape[3],
    kernel,
    stride: pair(o.stride ?? kernel),
    padding: pair(o.padding ?? 0),
    ceilMode: o.ceilMode ?? false,
  };
}

function outShape(s: Pool2dSpec): number[] {
  return [s.batch, s.channels, ...pooledShape(s)];
}

/** Max pooling; padding counts as −∞. The argmax is kept (u32, per output) for backward. */
export function maxPool2d(x: Tensor, o: Pool2dOptions): Tensor {
  const s = poolSpec(x, o);
  const y = empty(outShape(s));
  if (!(isGradEnabled() && x.requiresGrad)) {
    run(maxPool2dKernel(s, false), [x], [y]);
    return y;
  }
  const argmax = empty(y.shape, "u32");
  run(maxPool2dKernel(s), [x], [y, argmax]);
  // The rule reads the argmax, not the output.
  return ruleIgnoresOutput(record(y, [x], "max_pool2d", (g, into) => {
    // Added into x's gradient so far where autograd offers it (an FC skip, a SNUNet node).
    const dx = into?.[0] ?? empty(x.shape);
    run(maxPool2dGradKernel({ ...s, accumulate: !!into?.[0] }), [g, argmax], [dx]);
    return [dx];
  }));
}

/** Average pooling. */
export function avgPool2d(x: Tensor, o: AvgPool2dOptions): Tensor {
  const s: AvgPool2dSpec = { ...poolSpec(x, o), countIncludePad: o.countIncludePad ?? true };
  const y = empty(outShape(s));
  run(avgPool2dKernel(s), [x], [y]);
  return record(y, [x], "avg_pool2d", (g) => {
    const dx = empty(x.shape);
    run(avgPool2dGradKernel(s), [g], [dx]);
    return [dx];
  });
}

/** Equal windows for an adaptive output size that divides the input (PyTorch's adaptive
 * windows are exactly these then); other sizes are not supported. */
function adaptiveWindows(x: Tensor, size: Pair, what: string): Pool2dOptions {
  if (x.ndim !== 4) throw new Error(`${what} needs [B, C, H, W], got ${x.describe()}`);
  const [oh, ow] = pair(size);
  const [h, w] = [x.shape[2], x.shape[3]];
  if (!(oh >= 1 && ow >= 1 && h % oh === 0 && w % ow === 0)) {
    throw new Error(`${what}: output ${oh}×${ow} must divide the input ${h}×${w}`);
  }
  return { kernel: [h / oh, w / ow], stride: [h / oh, w / ow] };
}

/** PyTorch's adaptive-pooling bins along one axis as an [out, n] averaging matrix: bin i
 * covers [floor(i·n/out), ceil((i+1)·n/out)), so bins overlap when out does not divide n. */
function binMatrix(n: number, out: number): Tensor {
  const m = new Float32Array(out * n);
  for (let i = 0; i < out; i++) {
    const lo = Math.floor((i * n) / out), hi = Math.ceil(((i + 1) * n) / out);
    for (let k = lo; k < hi; k++) m[i * n + k] = 1 / (hi - lo);
  }
  return tensor(m, [out, n]);
}

/** Adaptive average pooling; size 1 is the global average ([B, C, 1, 1]). Where the output
 * does not divide the input (UPerNet's PPM: 8 → 3 and 6), PyTorch's overlapping bins, as two
 * products with averaging matrices (rows, then columns), which autograd differentiates. */
export function adaptiveAvgPool2d(x: Tensor, size: Pair): Tensor {
  const [oh, ow] = pair(size);
  if (x.ndim === 4 && (x.shape[2] % oh || x.shape[3] % ow) && oh >= 1 && ow >= 1) {
    const cols = matmul(x, binMatrix(x.shape[3], ow), { transB: true }); // [B, C, H, ow]
    return matmul(binMatrix(x.shape[2], oh), cols); // [B, C, oh, ow]
  }
  const win = adaptiveWindows(x, size, "adaptiveAvgPool2d");
  // The global average is a plane reduction: one workgroup per plane, not one thread.
  if (oh === 1 && ow === 1) return mean(x, [2, 3], true);
  return avgPool2d(x, win);
}

/** Adaptive max pooling; size 1 is the global max ([B, C, 1, 1]). */
export function adaptiveMaxPool2d(x: Tensor, size: Pair): Tensor {
  const win = adaptiveWindows(x, size, "adaptiveMaxPool2d");
  const [oh, ow] = pair(size);
  return oh === 1 && ow === 1 ? globalMaxPool2d(x, win) : maxPool2d(x, win);
}

/** The global max: one workgroup per plane; the gradient goes back through the max-pool
 * gradient kernel with the whole plane as its window. */
function globalMaxPool2d(x: Tensor, win: Pool2dOptions): Tensor {
  const s = poolSpec(x, win);
  const planes = s.batch * s.channels, n = s.height * s.width;
  const y = empty([s.batch, s.channels, 1, 1]);
  if (!(isGradEnabled() && x.requiresGrad)) {
    run(globalMaxPoolKernel(planes, n, false), [x], [y]);
    return y;
  }
  const argmax = empty(y.shape, "u32");
  run(globalMaxPoolKernel(planes, n), [x], [y, argmax]);
  // The rule reads the argmax, not the output.
  return ruleIgnoresOutput(record(y, [x], "global_max_pool", (g, into) => {
    // Added into x's gradient so far where autograd offers it (SNUNet's ECAM).
    const dx = into?.[0] ?? empty(x.shape);
    run(maxPool2dGradKernel({ ...s, accumulate: !!into?.[0] }), [g, argmax], [dx]);
    return [dx];
  }));
}
