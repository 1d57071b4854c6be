// Per-image confusion counts of a change map, on the GPU: read back 4 integers per image
// instead of the whole prediction. No gradient (integer output).

import { confusionKernel } from "../../kernels/confusion.ts";
import { fillKernel } from "../../kernels/elementwise.ts";
import { run } from "../launch.ts";
import { empty, type Tensor } from "../tensor.ts";

export interface ConfusionOptions {
  /** Probability above which a 1-channel map says "changed" (default 0.5). */
  threshold?: number;
}

/** logits [B, 1, H, W] (sigmoid > threshold) or [B, 2, H, W] (argmax), labels [B, H, W] u32
 * (0, 1; any other value, such as 255, is ignored) → u32 [B, 4] of (TP, FP, TN, FN). */
export function confusion(logits: Tensor, labels: Tensor, opts: ConfusionOptions = {}): Tensor {
  const { threshold = 0.5 } = opts;
  const [b, c, h, w] = logits.shape;
  if (logits.ndim !== 4 || (c !== 1 && c !== 2) || logits.dtype !== "f32") {
    throw new Error(`confusion: logits ${logits.describe()} must be [B, 1 or 2, H, W] f32`);
  }
  if (labels.dtype !== "u32" || labels.shape.join() !== [b, h, w].join()) {
    throw new Error(`confusion: labels ${labels.describe()} must be [${b}, ${h}, ${w}] u32`);
  }
  if (!(threshold >= 0 && threshold <= 1)) throw new Error(`confusion: threshold ${threshold}`);
  const counts = empty([b, 4], "u32");
  // The counting kernel adds atomically, so the counts start from zero.
  run(fillKernel(counts.size, 0, "u32"), [], [counts]);
  run(confusionKernel({ batch: b, channels: c, pixels: h * w, threshold }), [logits, labels], [
    counts,
  ]);
  return counts;
}
