// Half-precision storage at inference. Winograd F(4×4) around the GEMM writes its transformed
// input V and product P to global memory at 2.25× the tensors they come from, and at 512² those
// passes are bound by bytes (bench/results/kernel_notes.md); stored as f16 they move half as
// many. Arithmetic stays f32 (transforms, products, sums); only the stored values round to f16's
// 11 significant bits, what TF32 convolutions keep of their operands. Inference only: gradients
// sit below f16's range, and a training path would need loss scaling and a measured parity run
// (issue 17). `halfInference(fn)` runs fn without a tape (noGrad), so nothing inside can record
// a backward or recompute an activation in another precision.

import { noGrad } from "./autograd.ts";
import { hasFeature } from "./device.ts";

let active = false;

/** Whether kernels launched now may store transformed operands in f16. */
export function halfStorage(): boolean {
  return active;
}

/** Whether the device can: WGSL's f16 needs the shader-f16 feature. */
export function halfAvailable(): boolean {
  return hasFeature("shader-f16");
}

/** Run fn (an inference forward: launches are recorded synchronously; await its reads outside)
 * with f16 storage of transformed operands and without a tape. Throws where the device lacks
 * shader-f16, or where fn returns a promise (its continuation would run after both switches
 * are back). */
export function halfInference<T>(fn: () => T): T {
  if (!halfAvailable()) {
    throw new Error(
      "half-precision inference needs the GPU feature shader-f16, which this device lacks: run without it",
    );
  }
  const prev = active;
  active = true;
  try {
    const r = noGrad(fn);
    if (r instanceof Promise) {
      throw new Error("halfInference: fn must record its forward synchronously (await outside)");
    }
    return r;
  } finally {
    active = prev;
  }
}
