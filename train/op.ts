// O-P (Origin-Partition), the JL1-CD paper's first strategy: M_O is trained on all training
// pairs, one teacher per ground-truth CAR partition is trained from scratch on its pairs, and at
// test time the CAR that M_O predicts for an image picks the teacher whose output is scored.

import { initDevice } from "../engine/device.ts";
import type { CheckedDataset, PairInfo } from "../data/dataset.ts";
import {
  buildManifest,
  type Manifest,
  partitionOf,
  type PartitionScheme,
  readManifest,
  writeManifest,
} from "../data/partition.ts";
import { opRequests } from "./member_requests.ts";
import { trainMember } from "./member_unit.ts";
import { type Confusion, evaluate, type MetricsReport } from "./metrics.ts";
import { evalWindow, type TrainConfig } from "./config.ts";
import { evaluateModel } from "./evaluate.ts";
import { loadMember, manifestPath, originalDir, teacherDir } from "./members.ts";

export { opMembers } from "./member_requests.ts";

/** How a call gets past members trained with other settings. */
export const MEMBER_HINT = "repeat the flags they were trained with, or choose another --out";

/** Write the manifest under a temporary name and rename it: members running at once (an array
 * job) each write the same partition.json, and none may read another's half-written file. */
export async function writeManifestAtomic(path: string, manifest: Manifest): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await writeManifest(tmp, manifest);
  await Deno.rename(tmp, path);
}

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
  await writeManifestAtomic(manifestPath(dir), manifest);
  for (const req of opRequests(base, ds, scheme, dir)) {
    await trainMember(req, { dataset: ds, log, quiet, hint: MEMBER_HINT });
  }
  return await evaluateOp(base.model, ds.test, scheme, dir, base);
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
