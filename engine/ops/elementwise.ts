// Elementwise ops with broadcasting, each a forward map kernel and a backward built from maps.

import { f } from "../../kernels/common.ts";
import { broadcastShapes, fillKernel, mapKernel } from "../../kernels/elementwise.ts";
import { record, ruleIgnoresOutput } from "../autograd.ts";
import { type Operand, run } from "../launch.ts";
import { empty, type Shape, type Tensor } from "../tensor.ts";
import { sumTo } from "./reduce_raw.ts";

/** Run a map kernel (no autograd): `expr` over inputs a, b, c, ... broadcast to one shape. */
export function map(name: string, expr: string, inputs: Tensor[], outShape?: Shape): Tensor {
  return mapWithRecipe(name, expr, inputs, outShape).out;
}

/** map(), and its launch into any range: the recipe that writes `out` again (autograd's
 * `record`), for an op whose backward keeps its inputs anyway. */
export function mapWithRecipe(
  name: string,
  expr: string,
  inputs: Tensor[],
  outShape?: Shape,
): { out: Tensor; recipe: (out: Operand) => void } {
  const shape = outShape ?? broadcastShapes(...inputs.map((t) => t.shape));
  const k = mapKernel({
    name,
    expr,
    inputs: inputs.map((t) => ({ shape: t.shape })),
    outShape: shape,
  });
  const recipe = (o: Operand) => run(k, inputs, [o]);
  const out = empty(shape);
  recipe(out);
  return { out, recipe };
}

/** map() added into `into` where it is given and has the output's shape (a gradient so far,
 * autograd's offer to a backward rule: Node.backward's `into`), in the same pass; map()
 * otherwise. Returns the tensor written. */
export function mapInto(
  name: string,
  expr: string,
  inputs: Tensor[],
  into: Tensor | undefined,
  outShape?: Shape,
): Tensor {
  const shape = outShape ?? broadcastShapes(...inputs.map((t) => t.shape));
  if (!into || into.dtype !== "f32" || into.shape.join() !== shape.join()) {
    return map(name, expr, inputs, shape);
  }
  const spec = { name, expr, inputs: inputs.map((t) => ({ shape: t.shape })), outShape: shape };
  run(mapKernel({ ...spec, accumulate: true }), inputs, [into]);
  return into;
}

/** Broadcast `x` to `shape`, times `scale`. */
export function expand(x: Tensor, shape: Shape, scale = 1): Tensor {
  const out = map("expand", scale === 1 ? "a" : `a * ${f(scale)}`, [x], shape);
  return record(
    out,
    [x],
    "expand",
    (g) => [scale === 1 ? sumTo(g, x.shape) : mulScalar(sumTo(g, x.shape), scale)],
  );
}

export function fill(shape: Shape, value: number): Tensor {
  const out = empty(shape);
  run(fillKernel(out.size, value), [], [out]);
  return out;
}

/** Overwrite every element of `t` with `value` (accumulators, no autograd). */
export function fillInPlace(t: Tensor, value: number): void {
  run(fillKernel(t.size, value), [], [t]);
}

/** a + b. The sum carries its recipe (Tensor.evict): no backward rule of add reads it, and
 * its inputs outlive every rule that reads it (add's own is among their readers), so a sum
 * that only feeds rules that do not read it either (a residual sum under a ReLU, which reads
 * its output) can be let go after the forward and is never written again. */
export function add(a: Tensor, b: Tensor): Tensor {
  const { out, recipe } = mapWithRecipe("add", "a + b", [a, b]);
  return ruleIgnoresOutput(
    record(out, [a, b], "add", (g) => [sumTo(g, a.shape), sumTo(g, b.shape)], recipe),
  );
}

/** relu(a + b) in one pass: a residual sum under its ReLU (ResNet's, ResNeSt's, HANet's and
 * SNUNet's blocks), so the sum is never written. Like relu's, the rule reads only the output:
 * both inputs get the gradient where it is positive. */
export function addRelu(a: Tensor, b: Tensor): Tensor {
  const y = map("add_relu", "max(a + b, 0.0)", [a, b]);
  return record(y, [a, b], "add_relu", (g) => {
    const m = mapNamed("relu_grad", "select(0.0, g, y > 0.0)", [["g", g], ["y", y]]);
    return [sumTo(m, a.shape), sumTo(m, b.shape)];
  });
}

export function sub(a: Tensor, b: Tensor): Tensor {
  return record(map("sub", "a - b", [a, b]), [a, b], "sub", (g) => [
    sumTo(g, a.shape),
    sumTo(neg(g), b.shape),
  ]);
}

/** a·b. The product can be evicted once consumed (Tensor.evict): its inputs outlive every
 * backward rule that reads it (autograd counts mul's own rule among their readers). */
export function mul(a: Tensor, b: Tensor): Tensor {
  const { out, recipe } = mapWithRecipe("mul", "a * b", [a, b]);
  // Each gradient added into the input's gradient so far where autograd offers it (a gate's
  // features, TinyCD) and no broadcast sum follows.
  return record(out, [a, b], "mul", (g, into) => [
    a.requiresGrad ? sumTo(mapInto("mul", "a * b", [g, b], into?.[0]), a.shape) : null,
    b.requiresGrad ? sumTo(mapInto("mul", "a * b", [g, a], into?.[1]), b.shape) : null,
  ], recipe);
}

export function div(a: Tensor, b: Tensor): Tensor {
  return record(map("div", "a / b", [a, b]), [a, b], "div", (g) => [
    a.requiresGrad ? sumTo(map("div", "a / b", [g, b]), a.shape) : null,
    b.requiresGrad ? sumTo(map("div_grad_b", "-a * b / (c * c)", [g, a, b]), b.shape) : null,
  ]);
}

/** A unary op: forward expression in `a`; gradient expression in g (incoming gradient), x (the
 * input) and y (the output), of which only the names used are bound. */
function unary(name: string, expr: string, gradExpr: string) {
  const uses = (v: string) => new RegExp(`\\b${v}\\b`).test(gradExpr);
  return (x: Tensor): Tensor => {
    const y = map(name, expr, [x]);
    return record(y, [x], name, (g) => {
      const named = ([["g", g], ["x", x], ["y", y]] as const).filter(([v]) => uses(v));
      return [mapNamed(`${name}_grad`, gradExpr, named.map(([v, t]) => [v, t]))];
    });
  };
}

/** map() with named inputs. */
export function mapNamed(name: string, expr: string, inputs: [string, Tensor][]): Tensor {
  const shape = broadcastShapes(...inputs.map(([, t]) => t.shape));
  const out = empty(shape);
  run(
    mapKernel({
      name,
      expr,
      inputs: inputs.map(([n, t]) => ({ shape: t.shape, name: n })),
      outShape: shape,
    }),
    inputs.map(([, t]) => t),
    [out],
  );
  return out;
}

export const neg = unary("neg", "-a", "-g");
export const exp = unary("exp", "exp(a)", "g * y");
export const log = unary("log", "log(a)", "g / x");
export const sqrt = unary("sqrt", "sqrt(a)", "g * 0.5 / y");
export const abs = unary("abs", "abs(a)", "g * sign(x)");
export const square = unary("square", "a * a", "2.0 * g * x");
// From the output (y > 0 exactly where x > 0): ReLU's input is then read by no rule of its own,
// so an input with a recipe (a residual sum) can be evicted and is never written again.
export const relu = unary("relu", "max(a, 0.0)", "select(0.0, g, y > 0.0)");
export const sigmoid = unary("sigmoid", "1.0 / (1.0 + exp(-a))", "g * y * (1.0 - y)");
export const tanh = unary("tanh", "tanh(a)", "g * (1.0 - y * y)");

export function mulScalar(x: Tensor, s: number): Tensor {
  const y = map("mul_scalar", `a * ${f(s)}`, [x]);
  return record(y, [x], "mul_scalar", (g) => [map("mul_scalar", `a * ${f(s)}`, [g])]);
}

export function addScalar(x: Tensor, s: number): Tensor {
  return record(map("add_scalar", `a + ${f(s)}`, [x]), [x], "add_scalar", (g) => [g]);
}

/** x^p for a constant p (x > 0 unless p is a whole number). */
export function powScalar(x: Tensor, p: number): Tensor {
  const fwd = Number.isInteger(p) && p >= 0 && p <= 4
    ? (p === 0 ? "a * 0.0 + 1.0" : new Array(p).fill("a").join(" * "))
    : `pow(a, ${f(p)})`;
  const y = map("pow", fwd, [x]);
  return record(y, [x], "pow", (g) => [
    p === 1 ? g : map("pow_grad", `a * ${f(p)} * ${p === 2 ? "b" : `pow(b, ${f(p - 1)})`}`, [g, x]),
  ]);
}
