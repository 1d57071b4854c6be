// O-P evaluated on one split with every member run on every image: M_O (whose predicted CAR
// routes), and each teacher. From those counts come the routed result (hard: the teacher of
// the predicted partition; soft: near a threshold, the mean of the two neighbouring teachers'
// probabilities), the oracle (routed by ground-truth CAR: the upper bound of perfect routing),
// the routing confusion table, and each teacher's scores on every partition (cross_table.ts).
// Running every teacher on every image costs K evaluations instead of one; it is what the
// oracle and the cross table need, and inference is cheap beside training.

import type { PairInfo } from "../data/dataset.ts";
import { neighbourPartitions, partitionOf, type PartitionScheme } from "../data/partition.ts";
import type { ChangeDetector } from "../models/model.ts";
import { evaluateModel, type EvaluateOptions } from "./evaluate.ts";
import { type Confusion, evaluate, type MetricsReport } from "./metrics.ts";
import { AveragedDetector } from "./soft_route.ts";

export interface RoutedImage {
  name: string;
  car: number;
  predictedCar: number;
  /** Partition of the ground-truth CAR. */
  truth: number;
  /** Partition of M_O's predicted CAR (hard routing). */
  routed: number;
  /** The two partitions averaged when the predicted CAR lies within the margin of a threshold. */
  soft: [number, number] | null;
}

/** O-P's routing: each image goes to the teacher of the partition of the CAR that M_O
 * predicted for it (its ground-truth partition is kept only to score the routing); within
 * `margin` of a threshold it goes to both neighbours (soft). */
export function routeByPredictedCar(
  perImage: { name: string; car: number; predictedCar: number }[],
  scheme: PartitionScheme,
  margin = 0,
): RoutedImage[] {
  return perImage.map((r) => ({
    name: r.name,
    car: r.car,
    predictedCar: r.predictedCar,
    truth: partitionOf(r.car, scheme.thresholds),
    routed: partitionOf(r.predictedCar, scheme.thresholds),
    soft: neighbourPartitions(r.predictedCar, scheme.thresholds, margin),
  }));
}

/** routingConfusion[truth][routed] = images. */
export function routingConfusion(routing: RoutedImage[], partitions: number): number[][] {
  const m = Array.from({ length: partitions }, () => new Array(partitions).fill(0));
  for (const r of routing) m[r.truth][r.routed]++;
  return m;
}

export interface SplitOutcome {
  images: number;
  original: MetricsReport;
  /** Hard routing by M_O's predicted CAR (the paper's O-P). */
  op: MetricsReport;
  /** Routing by ground-truth CAR: what perfect routing would reach with these teachers. */
  oracle: MetricsReport;
  /** Soft routing (only with a margin > 0): images averaged, and the result. */
  soft: { margin: number; images: number; report: MetricsReport } | null;
  routing: RoutedImage[];
  confusion: number[][];
  accuracy: number;
  counts: {
    original: Map<string, Confusion>;
    op: Map<string, Confusion>;
    oracle: Map<string, Confusion>;
    soft: Map<string, Confusion> | null;
    /** Every teacher's counts on every image, in partition order. */
    teachers: Map<string, Confusion>[];
  };
}

const byName = (perImage: { name: string; counts: Confusion }[]) =>
  new Map(perImage.map((r) => [r.name, r.counts]));

/** O-P on `pairs` with M_O and the teachers (in partition order) already loaded. */
export async function opOnSplit(
  original: ChangeDetector,
  teachers: ChangeDetector[],
  pairs: PairInfo[],
  scheme: PartitionScheme,
  opts: EvaluateOptions,
  margin = 0,
): Promise<SplitOutcome> {
  const mo = await evaluateModel(original, pairs, opts);
  const routing = routeByPredictedCar(mo.perImage, scheme, margin);
  const perTeacher: Map<string, Confusion>[] = [];
  for (const t of teachers) perTeacher.push(byName((await evaluateModel(t, pairs, opts)).perImage));
  const pick = (k: (r: RoutedImage) => number) =>
    new Map(routing.map((r) => [r.name, perTeacher[k(r)].get(r.name)!]));
  const op = pick((r) => r.routed), oracle = pick((r) => r.truth);
  let soft: Map<string, Confusion> | null = null;
  const unsure = routing.filter((r) => r.soft);
  if (margin > 0) {
    soft = new Map(op);
    for (let j = 0; j + 1 < teachers.length; j++) {
      const names = new Set(unsure.filter((r) => r.soft![0] === j).map((r) => r.name));
      if (names.size === 0) continue;
      const mean = new AveragedDetector([teachers[j], teachers[j + 1]]);
      const res = await evaluateModel(mean, pairs.filter((p) => names.has(p.name)), opts);
      for (const r of res.perImage) soft.set(r.name, r.counts);
    }
  }
  const report = (m: Map<string, Confusion>) => evaluate(pairs.map((p) => m.get(p.name)!));
  return {
    images: pairs.length,
    original: mo.report,
    op: report(op),
    oracle: report(oracle),
    soft: soft && { margin, images: unsure.length, report: report(soft) },
    routing,
    confusion: routingConfusion(routing, scheme.names.length),
    accuracy: routing.length
      ? routing.filter((r) => r.truth === r.routed).length / routing.length
      : 0,
    counts: { original: byName(mo.perImage), op, oracle, soft, teachers: perTeacher },
  };
}
