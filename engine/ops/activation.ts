// Activations beyond the basic ones of elementwise.ts (relu, sigmoid, tanh live there):
// SiLU, GELU (erf form), erf, leaky ReLU, hard sigmoid, and PReLU with a learnable slope.

import {
  type Activation,
  activationGradKernel,
  activationKernel,
  preluGradKernel,
  preluKernel,
  type PreluSpec,
} from "../../kernels/activation.ts";
import { prod } from "../../kernels/common.ts";
import { record } from "../autograd.ts";
import { type Operand, run } from "../launch.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import { planeSums } from "./norm.ts";

function pointwise(a: Activation, x: Tensor): Tensor {
  const y = empty(x.shape);
  // Also y's recipe (Tensor.evict): x is what the backward keeps anyway.
  const apply = (out: Operand) => run(activationKernel(a, x.size), [x], [out]);
  apply(y);
  return record(y, [x], a.op, (g) => {
    const dx = empty(x.shape);
    run(activationGradKernel(a, x.size), [x, g], [dx]);
    return [dx];
  }, apply);
}

/** x·sigmoid(x). */
export function silu(x: Tensor): Tensor {
  return pointwise({ op: "silu" }, x);
}

/** x·Φ(x) with the exact (erf) normal CDF, as PyTorch's default GELU. */
export function gelu(x: Tensor): Tensor {
  return pointwise({ op: "gelu" }, x);
}

/** The error function (|error| < 1e-6). */
export function erf(x: Tensor): Tensor {
  return pointwise({ op: "erf" }, x);
}

/** x > 0 ? x : slope·x (PyTorch's default slope 0.01). */
export function leakyRelu(x: Tensor, slope = 0.01): Tensor {
  return pointwise({ op: "leakyRelu", slope }, x);
}

/** clamp(x/6 + 1/2, 0, 1), as PyTorch's Hardsigmoid. */
export function hardSigmoid(x: Tensor): Tensor {
  return pointwise({ op: "hardSigmoid" }, x);
}

/** x > 0 ? x : a·x with a learnable slope: shape [1] (shared) or [C] (per channel of
 * [B, C, ...]). The slope's gradient is Σ g·min(x, 0) over what it covers. */
export function prelu(x: Tensor, slope: Tensor): Tensor {
  const channels = x.ndim >= 2 ? x.shape[1] : 1;
  const shared = slope.size === 1;
  if (!shared && slope.size !== channels) {
    throw new Error(`prelu: slope ${slope.describe()} fits neither 1 nor ${channels} channels`);
  }
  const planeSize = x.ndim >= 2 ? prod(x.shape.slice(2)) : 1;
  const spec: PreluSpec = { n: x.size, channels, planeSize, shared };
  const y = empty(x.shape);
  run(preluKernel(spec), [x, slope], [y]);
  return record(y, [x, slope], "prelu", (g) => {
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = empty(x.shape);
      run(preluGradKernel(spec), [x, slope, g], [dx]);
    }
    let ds: Tensor | null = null;
    if (slope.requiresGrad) {
      const layout = { batch: x.ndim >= 2 ? x.shape[0] : x.size, channels, planeSize };
      const [s] = planeSums(
        {
          name: "prelu_slope_grad",
          layout,
          inputs: [{ name: "x", elementwise: true }, { name: "g", elementwise: true }],
          terms: ["g[e] * min(x[e], V(0.0))"],
        },
        [x, g],
        shared ? "all" : "channel",
      );
      ds = view(s, slope.shape);
    }
    return [dx, ds];
  });
}
