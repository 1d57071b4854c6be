// A record of the convolutions an op sequence asks for (geometry, epilogue, which gradients the
// tape will want), so the route table test (tests/engine/conv_routes_test.ts) can ask the
// planner for every model's routes from a dry run without running a kernel.

import type { ConvActivation, ConvGeometry } from "../kernels/conv2d.ts";

export interface ConvCall {
  op: "conv2d" | "convTranspose2d";
  /** The convolution's geometry (for a transposed conv: the conv whose input gradient it is). */
  g: ConvGeometry;
  activation: ConvActivation;
  bias: boolean;
  /** The bias gradient is an exact zero (a BatchNorm in training follows). */
  biasCancelled?: boolean;
  /** Gradients are recorded for this call (the epilogue saves what its backward needs). */
  recording: boolean;
  /** The backward will want the input's and the weight's gradients. */
  inputGrad: boolean;
  weightGrad: boolean;
}

let calls: ConvCall[] | null = null;

/** Called by the conv ops; a no-op unless inside traceConvs. */
export function traceConv(c: ConvCall): void {
  if (calls) calls.push(c);
}

/** Run fn and return the convolutions it asked for, in order. */
export function traceConvs(fn: () => void): ConvCall[] {
  const prev = calls;
  const mine: ConvCall[] = [];
  calls = mine;
  try {
    fn();
  } finally {
    calls = prev;
  }
  return mine;
}
