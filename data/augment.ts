// Random augmentation parameters per sample (drawn on the CPU from the run's seed and the step,
// so a resumed run draws the same ones), applied on the GPU by engine/ops/augment.ts.

import { Random } from "../engine/random.ts";
import { AUG_PARAMS } from "../engine/ops/augment.ts";

export interface AugmentOptions {
  rotate: boolean;
  flip: boolean;
  /** Photometric distortion per image: brightness ±32/255, contrast and saturation 0.5–1.5,
   * each applied with probability 1/2 (the mmseg PhotoMetricDistortion ranges; hue is not
   * changed). */
  photometric: boolean;
}

export const DEFAULT_AUGMENT: AugmentOptions = { rotate: true, flip: true, photometric: true };
/** Identity geometry and photometry: the kernel then only normalises. */
export const NO_AUGMENT: AugmentOptions = { rotate: false, flip: false, photometric: false };

export function augmentParams(
  batch: number,
  seed: number,
  step: number,
  o: AugmentOptions = DEFAULT_AUGMENT,
): Float32Array {
  const rng = new Random((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca77)) >>> 0);
  const p = new Float32Array(batch * AUG_PARAMS);
  const coin = () => rng.next() < 0.5;
  for (let i = 0; i < batch; i++) {
    const q = i * AUG_PARAMS;
    p[q] = o.rotate ? rng.int(4) : 0;
    p[q + 1] = o.flip && coin() ? 1 : 0;
    p[q + 2] = o.flip && coin() ? 1 : 0;
    for (const off of [3, 6]) {
      p[q + off] = o.photometric && coin() ? (rng.next() * 2 - 1) * (32 / 255) : 0;
      p[q + off + 1] = o.photometric && coin() ? 0.5 + rng.next() : 1;
      p[q + off + 2] = o.photometric && coin() ? 0.5 + rng.next() : 1;
    }
  }
  return p;
}
