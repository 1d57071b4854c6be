// 2-D convolution (NCHW, PyTorch weight layout) with bias and activation fused into the
// kernel's write-out, its backward (input, weight, bias and PReLU-slope gradients), and the
// eval-mode BatchNorm fold. Which kernel runs each pass is kernels/conv_plan.ts's choice; the
// launches are in conv2d_launch.ts (shared with the transposed convolution, which is the same
// three computations with the roles of input and output swapped).

import {
  type ConvActivation,
  type ConvGeometry,
  convGeometry,
  type Epilogue,
  foldBatchNormKernel,
  type Pair,
} from "../../kernels/conv2d.ts";
import { type ConvCallSpec, planOp } from "../../kernels/conv_plan.ts";
import { isGradEnabled, record, ruleIgnoresOutput } from "../autograd.ts";
import { traceConv } from "../conv_trace.ts";
import { run } from "../launch.ts";
import { addMacs } from "../profiler.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import {
  biasGrad,
  cancelledBiasGrad,
  convForwardRaw,
  convInputGradRaw,
  convWeightGradRaw,
} from "./conv2d_launch.ts";
import { mapNamed } from "./elementwise.ts";
import { matmulMap } from "./matmul.ts";
import { planeSums } from "./norm.ts";
import { reshape } from "./shape.ts";

export type { ConvActivation, Pair };

export interface Conv2dOptions {
  /** [Co]. */
  bias?: Tensor | null;
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  /** Applied in the kernel's write-out (default "none"). */
  activation?: ConvActivation;
  /** PReLU slope, [1] (shared) or [Co]; required with activation "prelu". */
  preluSlope?: Tensor;
  /** A batch-statistics normalisation follows (BatchNorm in training): the bias gradient is
   * exactly zero and the backward makes it so without a pass over dy (cancelledBiasGrad). */
  biasCancelled?: boolean;
}

/** Tensors the epilogue reads, after the input and the weight. */
export function epilogueTensors(bias: Tensor | null | undefined, slope?: Tensor): Tensor[] {
  return [...(bias ? [bias] : []), ...(slope ? [slope] : [])];
}

/** How the planners and the route trace see one call of a conv op (conv2d, convTranspose2d and
 * their conv-of-parts forms). */
export function convCallSpec(
  op: ConvCallSpec["op"],
  g: ConvGeometry,
  activation: ConvActivation,
  bias: Tensor | null | undefined,
  biasCancelled: boolean | undefined,
  recording: boolean,
): ConvCallSpec {
  return { op, g, activation, bias: !!bias, biasCancelled: !!bias && biasCancelled, recording };
}

export function checkEpilogueInputs(
  op: string,
  channels: number,
  act: ConvActivation,
  bias?: Tensor | null,
  slope?: Tensor,
): void {
  for (const t of [bias, slope]) {
    if (t && t.dtype !== "f32") throw new Error(`${op}: ${t.describe()} must be f32`);
  }
  if (bias && (bias.ndim !== 1 || bias.size !== channels)) {
    throw new Error(`${op}: bias ${bias.describe()} must be [${channels}]`);
  }
  if (act === "prelu") {
    if (!slope) throw new Error(`${op}: activation "prelu" needs preluSlope`);
    if (slope.size !== 1 && slope.size !== channels) {
      throw new Error(`${op}: preluSlope ${slope.describe()} must be [1] or [${channels}]`);
    }
  } else if (slope) throw new Error(`${op}: preluSlope given without activation "prelu"`);
}

export function checkFloat(op: string, x: Tensor, w: Tensor): void {
  if (x.dtype !== "f32" || w.dtype !== "f32") {
    throw new Error(`${op}: input ${x.describe()} and weight ${w.describe()} must be f32`);
  }
}

/** The epilogue for an op whose backward may need the pre-activation. */
export function epilogueFor(
  act: ConvActivation,
  bias: Tensor | null | undefined,
  slope: Tensor | undefined,
  recording: boolean,
): Epilogue {
  return {
    bias: !!bias,
    activation: act,
    savePre: recording && (act === "silu" || act === "prelu"),
    slopes: slope?.size,
  };
}

/** PReLU slope viewed for broadcasting against [B, C, H, W]. */
function slopeView(slope: Tensor): Tensor {
  return slope.size === 1 ? slope : view(slope, [1, slope.size, 1, 1]);
}

/** Whether activationBackward reads the output y (ReLU, sigmoid), not only the pre-activation
 * or nothing: a conv op's rule reads its own output only then (autograd's ruleIgnoresOutput). */
export function activationReadsOutput(act: ConvActivation): boolean {
  return act === "relu" || act === "sigmoid";
}

/** Gradient at the pre-activation z from the gradient at the output y = act(z). */
export function activationBackward(
  act: ConvActivation,
  gy: Tensor,
  y: Tensor,
  pre: Tensor | null,
  slope?: Tensor,
): Tensor {
  switch (act) {
    case "none":
      return gy;
    case "relu":
      return mapNamed("relu_grad", "select(0.0, g, y > 0.0)", [["g", gy], ["y", y]]);
    case "sigmoid":
      return mapNamed("sigmoid_grad", "g * y * (1.0 - y)", [["g", gy], ["y", y]]);
    case "silu":
      return mapNamed(
        "silu_grad",
        "g * (1.0 / (1.0 + exp(-z))) * (1.0 + z * (1.0 - 1.0 / (1.0 + exp(-z))))",
        [["g", gy], ["z", pre!]],
      );
    case "prelu":
      return mapNamed("prelu_grad", "select(s * g, g, z > 0.0)", [
        ["g", gy],
        ["z", pre!],
        ["s", slopeView(slope!)],
      ]);
  }
}

/** The gradient at the pre-activation and, for a PReLU whose slope wants one, dL/dslope =
 * Σ g·min(z, 0) (per channel or over everything) from the same pass: one two-stage plane sum over
 * g and z that also writes gz (no product tensor of the output's size: it was part of a TinyCD
 * step's peak; and TinyCD's 21 PReLU convs read g and z twice before, once per gradient). */
export function activationGrads(
  act: ConvActivation,
  gy: Tensor,
  y: Tensor,
  pre: Tensor | null,
  slope?: Tensor,
): { gz: Tensor; dslope: Tensor | null } {
  if (act !== "prelu" || !slope?.requiresGrad) {
    return { gz: activationBackward(act, gy, y, pre, slope), dslope: null };
  }
  const channels = gy.shape[1];
  const gz = empty(gy.shape);
  const [s] = planeSums(
    {
      name: "prelu_grads",
      layout: { batch: gy.shape[0], channels, planeSize: gy.size / (gy.shape[0] * channels) },
      inputs: [
        { name: "g", elementwise: true },
        { name: "z", elementwise: true },
        { name: "s", elementwise: false },
      ],
      setup: `let sl = V(s[${slope.size === 1 ? "0u" : `plane % ${channels}u`}]);`,
      terms: ["g[e] * min(z[e], V(0.0))"],
      map: "select(sl * g[e], g[e], z[e] > V(0.0))",
    },
    [gy, pre!, slope],
    slope.size === 1 ? "all" : "channel",
    gz,
  );
  return { gz, dslope: view(s, slope.shape) };
}

/** conv2d(x [B, Ci, H, W], w [Co, Ci/groups, kh, kw]) → [B, Co, Ho, Wo], PyTorch semantics,
 * with optional bias and a fused activation. */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = convGeometry(x.shape, w.shape, opts);
  checkFloat("conv2d", x, w);
  const act = opts.activation ?? "none";
  const { bias, preluSlope: slope } = opts;
  checkEpilogueInputs("conv2d", g.co, act, bias, slope);
  const extra = epilogueTensors(bias, slope);
  const inputs = [x, w, ...extra];
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const call = convCallSpec("conv2d", g, act, bias, opts.biasCancelled, recording);
  const inputGrad = recording && x.requiresGrad, weightGrad = recording && w.requiresGrad;
  traceConv({ ...call, inputGrad, weightGrad });
  if (planOp(call)?.kind === "matmul-op") {
    return matmulMap(reshape(w, [g.co, g.ci]), x, {
      bias: bias ?? undefined,
      biasAxis: "m",
      activation: act === "none" || act === "prelu" ? undefined : act,
      biasCancelled: opts.biasCancelled,
    });
  }
  const ep = epilogueFor(act, bias, slope, recording);
  const { y, pre } = convForwardRaw(g, x, w, ep, extra);
  addMacs(g.batch * g.co * g.ho * g.wo * (g.ci / g.groups) * g.kh * g.kw);
  const out = record(y, inputs, "conv2d", (gy) => {
    const { gz, dslope } = activationGrads(act, gy, y, pre, slope);
    const wantB = !!bias?.requiresGrad, sumB = wantB && !opts.biasCancelled;
    let dw: Tensor | null = null, db: Tensor | null = null;
    if (w.requiresGrad) ({ dw, db } = convWeightGradRaw(g, x, gz, sumB));
    else if (sumB) db = biasGrad(gz);
    if (wantB && !sumB) db = cancelledBiasGrad(bias!.size);
    const grads: (Tensor | null)[] = [
      x.requiresGrad ? convInputGradRaw(g, gz, w).y : null,
      dw,
    ];
    if (bias) grads.push(db);
    if (slope) grads.push(dslope);
    return grads;
  });
  return activationReadsOutput(act) ? out : ruleIgnoresOutput(out);
}

/** Eval-mode BatchNorm folded into the conv before it: with s = γ/√(var + ε),
 * w' = w·s per output channel and b' = (b − mean)·s + β, so conv(x, w', b') equals
 * bn(conv(x, w, b)). γ, β may be null (BatchNorm without affine). `transposed`: w is a
 * transposed conv's [Ci, Co, kh, kw] (one group), whose output channels are axis 1. No
 * autograd. */
export function foldBatchNorm(
  w: Tensor,
  b: Tensor | null,
  mean: Tensor,
  variance: Tensor,
  gamma: Tensor | null,
  beta: Tensor | null,
  eps = 1e-5,
  transposed = false,
): { weight: Tensor; bias: Tensor } {
  if (w.ndim !== 4) throw new Error(`foldBatchNorm: weight ${w.describe()} must be 4-D`);
  const co = w.shape[transposed ? 1 : 0];
  const outer = transposed ? w.shape[0] : 1;
  for (const t of [b, mean, variance, gamma, beta]) {
    if (t && t.size !== co) {
      throw new Error(`foldBatchNorm: ${t.describe()} does not match ${co} output channels`);
    }
  }
  if (!gamma !== !beta) throw new Error("foldBatchNorm: give both gamma and beta, or neither");
  const weight = empty(w.shape);
  const bias = empty([co]);
  const inputs = [w, ...(b ? [b] : []), mean, variance, ...(gamma ? [gamma, beta!] : [])];
  run(
    foldBatchNormKernel({
      co,
      perChannel: w.size / (co * outer),
      outer,
      eps,
      hasBias: !!b,
      affine: !!gamma,
    }),
    inputs,
    [weight, bias],
  );
  return { weight, bias };
}
