// Reductions without autograd: the one- or two-stage reduce kernel launch and sumTo (the reverse
// of broadcasting), shared by reduce.ts and the backward rules of elementwise.ts and layout.ts.
// Split from reduce.ts so that it and elementwise.ts (expand) do not import each other.

import { reduceChunks, reduceKernel } from "../../kernels/reduce.ts";
import { run } from "../launch.ts";
import { empty, type Shape, type Tensor, view } from "../tensor.ts";

/** `shape` with `axes` reduced: kept as 1 (keepdim) or dropped. */
export function reducedShape(shape: Shape, axes: number[], keepdim: boolean): number[] {
  return keepdim
    ? shape.map((d, k) => (axes.includes(k) ? 1 : d))
    : shape.filter((_, k) => !axes.includes(k));
}

/** Sum or max of `x` over sorted `axes` (empty: every element), times `scale`; no gradient. */
export function reduce(
  x: Tensor,
  op: "sum" | "max",
  axes: number[],
  keepdim: boolean,
  scale: number,
): Tensor {
  const out = empty(reducedShape(x.shape, axes, keepdim));
  const shape = axes.length === 0 ? [x.size, 1] : x.shape;
  const ax = axes.length === 0 ? [1] : axes;
  const n = ax.reduce((p, k) => p * shape[k], 1);
  const chunks = reduceChunks(out.size, n);
  if (chunks === 1) {
    run(reduceKernel({ shape, axes: ax, op, scale }), [x], [out]);
    return out;
  }
  // Two stages: partial results per chunk, then their reduction.
  const partial = empty([out.size, chunks]);
  run(reduceKernel({ shape, axes: ax, op, chunks }), [x], [partial]);
  run(reduceKernel({ shape: [out.size, chunks], axes: [1], op, scale }), [partial], [out]);
  partial.dispose();
  return out;
}

/** Sum `g` down to `shape` (the inverse of broadcasting `shape` up to g.shape). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, k) => d === shape[k])) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let k = 0; k < g.ndim; k++) {
    if (k < lead || (shape[k - lead] === 1 && g.shape[k] !== 1)) axes.push(k);
  }
  if (axes.length === 0) return reshapeRaw(g, shape);
  const out = reduce(g, "sum", axes, true, 1);
  return reshapeRaw(out, shape);
}

/** A view of `t` with `shape` (no gradient), or `t` itself when the shape is unchanged. */
export function reshapeRaw(t: Tensor, shape: Shape): Tensor {
  if (t.shape.length === shape.length && t.shape.every((d, k) => d === shape[k])) return t;
  return view(t, shape);
}
