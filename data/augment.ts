// Random augmentation parameters per sample (drawn on the CPU from the run's seed and the step,
// so a resumed run draws the same ones), applied on the GPU by engine/ops/augment.ts.
// The optional Open-CD transforms (any-angle rotation, Changer's RotFlip, the A/B exchange) draw
// extra numbers only when set, so the default augmentation draws exactly what it always did.

import { Random } from "../engine/random.ts";
import { AUG_PARAMS } from "../engine/ops/augment.ts";

export interface AugmentOptions {
  rotate: boolean;
  flip: boolean;
  /** Photometric distortion per image: brightness ±32/255, contrast and saturation 0.5–1.5,
   * each applied with probability 1/2 (the mmseg PhotoMetricDistortion ranges; hue is not
   * changed). */
  photometric: boolean;
  /** Open-CD's MultiImgRandomRotate (prob, degree): with this probability, a rotation by an
   * angle uniform in ±rotateDegrees (image fill 0, label fill 255 = ignored). When set (> 0)
   * it replaces the quarter turn of `rotate`; the flips of `flip` stay (Open-CD's standard
   * pipeline: rotate, then horizontal and vertical flips at 1/2 each). */
  rotateProb?: number;
  rotateDegrees?: number;
  /** Changer's MultiImgRandomRotFlip(rotate_prob, flip_prob): when set, the geometry is that
   * transform instead of `rotate` / `flip`: the angle rotation with rotateProb, and only when it
   * was not taken, with this probability a quarter turn k ∈ {0..3} followed by a flip along a
   * random axis. */
  rotFlipProb?: number;
  /** Open-CD's MultiImgExchangeTime: probability of exchanging A and B. */
  swapProb?: number;
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
  checkOptions(o);
  const p = new Float32Array(batch * AUG_PARAMS);
  const coin = () => rng.next() < 0.5;
  const chance = (prob = 0) => prob > 0 && rng.next() < prob;
  const openCd = (o.rotateProb ?? 0) > 0 || o.rotFlipProb !== undefined;
  for (let i = 0; i < batch; i++) {
    const q = i * AUG_PARAMS;
    if (!openCd) {
      p[q] = o.rotate ? rng.int(4) : 0;
      p[q + 1] = o.flip && coin() ? 1 : 0;
      p[q + 2] = o.flip && coin() ? 1 : 0;
    } else {
      const turned = chance(o.rotateProb);
      // np.random.uniform(−d, d); an exact 0 would read as "no rotation", which it equals.
      if (turned) p[q + 9] = (2 * rng.next() - 1) * (o.rotateDegrees ?? 0);
      if (o.rotFlipProb !== undefined) {
        if (!turned && chance(o.rotFlipProb)) {
          p[q] = rng.int(4);
          // np.flip(axis=0) flips rows (vertical), axis=1 columns (horizontal).
          const axis = rng.int(2);
          p[q + 1 + (1 - axis)] = 1;
        }
      } else {
        p[q + 1] = o.flip && coin() ? 1 : 0;
        p[q + 2] = o.flip && coin() ? 1 : 0;
      }
    }
    if (chance(o.swapProb)) p[q + 10] = 1;
    for (const off of [3, 6]) {
      p[q + off] = o.photometric && coin() ? (rng.next() * 2 - 1) * (32 / 255) : 0;
      p[q + off + 1] = o.photometric && coin() ? 0.5 + rng.next() : 1;
      p[q + off + 2] = o.photometric && coin() ? 0.5 + rng.next() : 1;
    }
  }
  return p;
}

function checkOptions(o: AugmentOptions): void {
  for (const k of ["rotateProb", "rotFlipProb", "swapProb"] as const) {
    const v = o[k];
    if (v !== undefined && !(v >= 0 && v <= 1)) {
      throw new Error(`augmentation: ${k} must lie in [0, 1], got ${v}`);
    }
  }
  const d = o.rotateDegrees;
  if (d !== undefined && !(d >= 0 && d <= 180)) {
    throw new Error(`augmentation: rotateDegrees must lie in [0, 180], got ${d}`);
  }
  if ((o.rotateProb ?? 0) > 0 && !d) {
    throw new Error("augmentation: rotateProb needs rotateDegrees (the ± range of the angle)");
  }
}
