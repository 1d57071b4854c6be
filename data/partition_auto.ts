// Partitions from the data: CAR thresholds that split the training set into K partitions of
// (nearly) equal counts, instead of the paper's fixed 0.05 / 0.2 (or 0.10). A cut lies between
// two distinct CARs, so pairs with equal CAR never straddle it; ties move a cut to the nearest
// place where the CAR changes, which can make the counts unequal (partitionSummary prints them).

import { customScheme, type PartitionScheme } from "./partition.ts";

/** The most teachers the automatic choice considers (the range 1..4). */
export const MAX_AUTO_TEACHERS = 4;

/** Ascending thresholds (K − 1 of them) splitting `cars` into K equal-count partitions. */
export function equalCountThresholds(cars: readonly number[], k: number): number[] {
  if (!Number.isInteger(k) || k < 1) throw new Error(`teacher count ${k}: expected 1, 2, 3, …`);
  const s = [...cars].sort((a, b) => a - b);
  if (s.length < k) {
    throw new Error(
      `${k} equal-count partitions need at least ${k} training pairs; the training set has ` +
        `${s.length}: use fewer --teachers`,
    );
  }
  const cuts: number[] = [];
  for (let i = 1; i < k; i++) {
    const target = Math.round((i * s.length) / k), after = cuts.at(-1) ?? 0;
    // Pairs below the cut: the nearest count to the target where the CAR steps up.
    const ok = (c: number) => c > after && c < s.length && s[c - 1] < s[c];
    let cut = -1;
    for (let d = 0; d <= s.length && cut < 0; d++) {
      cut = ok(target - d) ? target - d : ok(target + d) ? target + d : -1;
    }
    if (cut < 0) {
      const distinct = new Set(s).size;
      throw new Error(
        `the training set's CARs take only ${distinct} distinct values: ${k} partitions ` +
          "cannot be cut between them; use fewer --teachers",
      );
    }
    cuts.push(cut);
  }
  return cuts.map((c) => shortThreshold(s[c - 1], s[c]));
}

/** The shortest decimal t with lo ≤ t < hi (t > 0): readable thresholds, same partitions. */
function shortThreshold(lo: number, hi: number): number {
  for (let digits = 1; digits <= 17; digits++) {
    const t = Number(((lo + hi) / 2).toPrecision(digits));
    if (t >= lo && t < hi && t > 0) return t;
  }
  return (lo + hi) / 2;
}

/** The scheme of K equal-count partitions of the training pairs' CARs. */
export function equalCountScheme(cars: readonly number[], k: number): PartitionScheme {
  return customScheme(equalCountThresholds(cars, k));
}

/** A partition scheme as a command asks for it: fixed thresholds (the paper's, or given), K
 * equal-count partitions of the training set, or (op --teachers auto) the choice of K itself. */
export type SchemeSpec = PartitionScheme | { equalCount: number } | { select: "auto" };

/** The scheme a spec gives on this training set (the choice of K is op's, not resolved here). */
export function schemeFor(spec: SchemeSpec, train: readonly { car: number }[]): PartitionScheme {
  if ("thresholds" in spec) return spec;
  if ("equalCount" in spec) return equalCountScheme(train.map((p) => p.car), spec.equalCount);
  throw new Error("--teachers auto chooses the teacher count while training (deno task op)");
}

/** Partitions (teachers) of a spec before the data is read; null when op chooses. */
export function partitionCount(spec: SchemeSpec): number | null {
  if ("thresholds" in spec) return spec.names.length;
  return "equalCount" in spec ? spec.equalCount : null;
}
