// Where products may trade precision for tensor cores. The default, "f32", runs every product
// in f32 on the shader cores. "f16" lets the forward products (matmul and linear layers, 1×1
// convolutions, the transform-domain GEMM of Winograd convolutions) run on tensor cores with
// operands rounded to f16 and f32 accumulation (kernels/matmul_coop.ts): the same 10-bit
// mantissa as the TF32 that PyTorch uses for convolutions by default, with f16's narrower
// exponent. Backward products stay f32 in either mode: gradients sit far below f16's range.
//
// The mode is read when a forward op picks its route and travels with the op (GemmOptions
// .precision), so an evicted activation is written again exactly as before. A trainer may run in
// "f16" only with a training-parity result (bench/results/precision_parity_*), as the README says.

import { hasFeature } from "./device.ts";
import { COOP_FEATURE } from "../kernels/matmul_coop.ts";

export type Precision = "f32" | "f16";
export const PRECISIONS: readonly Precision[] = ["f32", "f16"];

let mode: Precision = "f32";

/** Choose the precision of forward products; "f16" needs an adapter with tensor cores. */
export function setPrecision(p: Precision): void {
  if (p === "f16" && !hasFeature(COOP_FEATURE)) {
    throw new Error(
      `--precision f16 needs tensor cores through WebGPU (the adapter feature ${COOP_FEATURE}, ` +
        "offered by Vulkan drivers with VK_KHR_cooperative_matrix, e.g. NVIDIA's); this " +
        "adapter lacks it. Use --precision f32 (the default).",
    );
  }
  mode = p;
}

let backwardDepth = 0;

/** The precision a product launched now takes: the mode, except inside backward() (whose
 * rules may call forward ops on gradients). */
export function forwardPrecision(): Precision {
  return backwardDepth > 0 ? "f32" : mode;
}

/** Run a backward pass: products launched inside stay f32. */
export function inBackward<T>(fn: () => T): T {
  backwardDepth++;
  try {
    return fn();
  } finally {
    backwardDepth--;
  }
}

/** Parse a --precision value, naming the choices on a bad one. */
export function parsePrecision(s: string): Precision {
  if ((PRECISIONS as readonly string[]).includes(s)) return s as Precision;
  throw new Error(`--precision ${s}: choose one of ${PRECISIONS.join(", ")}`);
}
