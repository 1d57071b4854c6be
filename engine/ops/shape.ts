// Shape ops that move no data: reshape is a view with a reshaping backward.

import { record } from "../autograd.ts";
import { type Shape, type Tensor, view } from "../tensor.ts";

/** Same data, new shape; one dimension may be -1 (inferred). */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const s = shape.map((d) => (d === -1 ? x.size / known : d));
  if (s.some((d) => !Number.isInteger(d)) || s.reduce((p, d) => p * d, 1) !== x.size) {
    throw new Error(`reshape: ${x.describe()} cannot become [${shape.join(", ")}]`);
  }
  return record(view(x, s), [x], "reshape", (g) => [view(g, x.shape)]);
}
