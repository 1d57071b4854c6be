// O-P (Origin-Partition), the JL1-CD paper's first strategy: M_O is trained on all training
// pairs, one teacher per ground-truth CAR partition is trained from scratch on its pairs, and at
// test time the CAR that M_O predicts for an image picks the teacher whose output is scored.

import { initDevice } from "../engine/device.ts";
import { type CheckedDataset, type PairInfo } from "../data/dataset.ts";
import {
  buildManifest,
  type Manifest,
  partitionOf,
  type PartitionScheme,
  readManifest,
  writeManifest,
} from "../data/partition.ts";
import { type Confusion, evaluate, type MetricsReport } from "./metrics.ts";
import { evalWindow, type TrainConfig } from "./config.ts";
import { evaluateModel } from "./evaluate.ts";
import { hasRun, isTrained, loadMember, manifestPath, originalDir, teacherDir } from "./members.ts";
import { train } from "./trainer.ts";

export interface OpResult {
  manifest: Manifest;
  original: MetricsReport;
  op: MetricsReport;
  /** Per test image: ground-truth and routed (predicted) partition. */
  routing: { name: string; car: number; predictedCar: number; truth: number; routed: number }[];
  /** routingConfusion[truth][routed] = images. */
  routingConfusion: number[][];
  routingAccuracy: number;
  /** Counts per test image for each strategy, by name (reports, MTKD comparison). */
  counts: { original: Map<string, Confusion>; op: Map<string, Confusion> };
}

/** Train (or reuse) M_O and the teachers, then evaluate O-P on the test split. */
export async function runOp(
  base: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  log: (s: string) => void = console.error,
  quiet = false,
): Promise<OpResult> {
  await initDevice();
  const manifest = buildManifest(ds.train, scheme);
  await writeManifest(manifestPath(dir), manifest);
  const members = opMembers(ds, scheme, dir);
  for (const m of members) {
    if (isTrained(m.runDir, base.iters)) {
      log(`${m.name}: reusing ${m.runDir}`);
      continue;
    }
    if (m.pairs.length === 0) {
      throw new Error(
        `partition "${m.name}" has no training pairs: use other thresholds (--thresholds) or fewer teachers`,
      );
    }
    log(`${m.name}: training on ${m.pairs.length} pairs → ${m.runDir}`);
    // An interrupted member continues where its last checkpoint left it.
    const resume = hasRun(m.runDir) ? m.runDir : undefined;
    await train({ ...base, out: m.runDir, resume }, {
      trainPairs: m.pairs,
      dataset: ds,
      label: m.name,
      quiet,
    });
  }
  return await evaluateOp(base.model, ds.test, scheme, dir, base);
}

/** M_O and the teachers: name, run folder, training pairs. */
export function opMembers(
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
): { name: string; runDir: string; pairs: PairInfo[] }[] {
  const manifest = buildManifest(ds.train, scheme);
  return [
    { name: "original", runDir: originalDir(dir), pairs: ds.train },
    ...scheme.names.map((n) => ({
      name: n,
      runDir: teacherDir(dir, n),
      pairs: ds.train.filter((_, i) => manifest.pairs[i].partition === n),
    })),
  ];
}

/** O-P's routing: each image goes to the teacher of the partition of the CAR that M_O
 * predicted for it (its ground-truth partition is kept only to score the routing). */
export function routeByPredictedCar(
  perImage: { name: string; car: number; predictedCar: number }[],
  scheme: PartitionScheme,
): OpResult["routing"] {
  return perImage.map((r) => ({
    name: r.name,
    car: r.car,
    predictedCar: r.predictedCar,
    truth: partitionOf(r.car, scheme.thresholds),
    routed: partitionOf(r.predictedCar, scheme.thresholds),
  }));
}

/** O-P on `test`: route each image by M_O's predicted CAR. */
export async function evaluateOp(
  model: string,
  test: PairInfo[],
  scheme: PartitionScheme,
  dir: string,
  cfg: Pick<TrainConfig, "batch" | "size">,
): Promise<OpResult> {
  await initDevice();
  if (test.length === 0) throw new Error("the dataset has no test split to evaluate O-P on");
  const opts = evalWindow({ ...cfg, model });
  const original = loadMember(model, originalDir(dir));
  const mo = await evaluateModel(original, test, opts);
  original.dispose();
  const routing = routeByPredictedCar(mo.perImage, scheme);
  const opCounts = new Map<string, Confusion>();
  for (let t = 0; t < scheme.names.length; t++) {
    const routed = test.filter((_, i) => routing[i].routed === t);
    if (routed.length === 0) continue;
    const teacher = loadMember(model, teacherDir(dir, scheme.names[t]));
    const res = await evaluateModel(teacher, routed, opts);
    teacher.dispose();
    for (const r of res.perImage) opCounts.set(r.name, r.counts);
  }
  const k = scheme.names.length;
  const confusion = Array.from({ length: k }, () => new Array(k).fill(0));
  for (const r of routing) confusion[r.truth][r.routed]++;
  const moCounts = new Map(mo.perImage.map((r) => [r.name, r.counts]));
  return {
    manifest: await readManifest(manifestPath(dir)),
    original: mo.report,
    op: evaluate(test.map((p) => opCounts.get(p.name)!)),
    routing,
    routingConfusion: confusion,
    routingAccuracy: routing.filter((r) => r.truth === r.routed).length / routing.length,
    counts: { original: moCounts, op: opCounts },
  };
}
