// Sum, mean and max over axes, and sumTo (the reverse of broadcasting, used by backward rules).

import { reduceChunks, reduceKernel } from "../../kernels/reduce.ts";
import { record } from "../autograd.ts";
import { run } from "../launch.ts";
import { empty, type Shape, type Tensor, view } from "../tensor.ts";
import { expand } from "./elementwise.ts";

function normAxes(t: Tensor, axes?: number | number[]): number[] {
  const list = axes === undefined ? t.shape.map((_, k) => k) : Array.isArray(axes) ? axes : [axes];
  const out = list.map((a) => (a < 0 ? a + t.ndim : a));
  for (const a of out) {
    if (a < 0 || a >= t.ndim) throw new Error(`axis ${a} out of range for ${t.describe()}`);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

function reducedShape(shape: Shape, axes: number[], keepdim: boolean): number[] {
  return keepdim
    ? shape.map((d, k) => (axes.includes(k) ? 1 : d))
    : shape.filter((_, k) => !axes.includes(k));
}

function reduce(
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

export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(x, axes);
  const out = reduce(x, "sum", ax, keepdim, 1);
  return record(
    out,
    [x],
    "sum",
    (g) => [expand(reshapeRaw(g, reducedShape(x.shape, ax, true)), x.shape)],
  );
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes(x, axes);
  const n = ax.reduce((p, k) => p * x.shape[k], 1);
  const out = reduce(x, "sum", ax, keepdim, 1 / n);
  return record(
    out,
    [x],
    "mean",
    (g) => [expand(reshapeRaw(g, reducedShape(x.shape, ax, true)), x.shape, 1 / n)],
  );
}

/** Max over axes (no gradient: use it for statistics and numerics, not as a loss). */
export function max(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  return reduce(x, "max", normAxes(x, axes), keepdim, 1);
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

function reshapeRaw(t: Tensor, shape: Shape): Tensor {
  if (t.shape.length === shape.length && t.shape.every((d, k) => d === shape[k])) return t;
  return view(t, shape);
}
