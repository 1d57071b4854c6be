// Sum, mean and max over axes with their gradients. The kernels' launch and sumTo (the reverse of
// broadcasting, which elementwise backward rules need) are in reduce_raw.ts, so that this file
// and elementwise.ts do not import each other.

import { record } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { f } from "../../kernels/common.ts";
import { mapInto } from "./elementwise.ts";
import { reduce, reducedShape, reshapeRaw, sumTo } from "./reduce_raw.ts";

export { sumTo };

function normAxes(t: Tensor, axes?: number | number[]): number[] {
  const list = axes === undefined ? t.shape.map((_, k) => k) : Array.isArray(axes) ? axes : [axes];
  const out = list.map((a) => (a < 0 ? a + t.ndim : a));
  for (const a of out) {
    if (a < 0 || a >= t.ndim) throw new Error(`axis ${a} out of range for ${t.describe()}`);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(x, axes);
  const out = reduce(x, "sum", ax, keepdim, 1);
  return record(
    out,
    [x],
    "sum",
    (g, into) => [
      mapInto("expand", "a", [reshapeRaw(g, reducedShape(x.shape, ax, true))], into?.[0], x.shape),
    ],
  );
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(x, axes);
  const n = ax.reduce((p, k) => p * x.shape[k], 1);
  const out = reduce(x, "sum", ax, keepdim, 1 / n);
  // The broadcast gradient, added into x's gradient so far where autograd offers it (TinyCD's
  // attention gates average what their norm also reads).
  return record(out, [x], "mean", (g, into) => [
    mapInto(
      "expand",
      `a * ${f(1 / n)}`,
      [reshapeRaw(g, reducedShape(x.shape, ax, true))],
      into?.[0],
      x.shape,
    ),
  ]);
}

/** Max over axes (no gradient: use it for statistics and numerics, not as a loss). */
export function max(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  return reduce(x, "max", normAxes(x, axes), keepdim, 1);
}
