// A label map's indicator of one class as f32 (1 where label == class, else 0), for losses
// composed from float ops (mmseg's Dice target).

import { cached, type Kernel, kernel1d, ro, rw } from "./common.ts";

function labelMaskKernelGen(n: number, cls: number): Kernel {
  return kernel1d(
    "label_mask",
    [ro("labels", "u32"), rw("out")],
    n,
    `out[i] = select(0.0, 1.0, labels[i] == ${cls}u);`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const labelMaskKernel = cached(labelMaskKernelGen);
