// The CAR each synthetic pair aims for, skewed like JL1-CD (paper, Fig. 5): most pairs change
// less than 5 % of their pixels, some not at all, and a long tail reaches fully changed scenes.

import type { Random } from "../random.ts";

/** Shares of the target distribution; they sum to 1. */
export const CAR_MIXTURE = {
  /** No change at all. */
  none: 0.07,
  /** Log-uniform in [0.03 %, 5 %]. */
  small: 0.65,
  /** Uniform in (5 %, 20 %]. */
  medium: 0.14,
  /** Uniform in (20 %, 90 %]. */
  large: 0.11,
  /** Uniform in (90 %, 100 %]: almost or entirely changed. */
  full: 0.03,
} as const;

export function drawTargetCar(random: Random): number {
  const u = random(), m = CAR_MIXTURE;
  const v = random();
  if (u < m.none) return 0;
  if (u < m.none + m.small) return 0.0003 * Math.pow(0.05 / 0.0003, v);
  if (u < m.none + m.small + m.medium) return 0.05 + 0.15 * v;
  if (u < 1 - m.full) return 0.2 + 0.7 * v;
  return 0.9 + 0.1 * v;
}
