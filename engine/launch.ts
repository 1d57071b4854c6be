// The bridge from kernel specs to recorded dispatches: inputs bind first, outputs after.

import type { Kernel } from "../kernels/common.ts";
import { dispatch } from "./recorder.ts";
import type { Tensor } from "./tensor.ts";

export function run(k: Kernel, inputs: Tensor[], outputs: Tensor[]): void {
  dispatch(k.name, k.code, [...inputs, ...outputs].map((t) => t.binding), k.workgroups);
}
