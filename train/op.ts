// O-P (Origin-Partition), the JL1-CD paper's first strategy: M_O is trained on all training
// pairs, one teacher per ground-truth CAR partition is trained from scratch on its pairs (or,
// with --teacher-init original, from M_O's weights: train/teacher_init.ts), and at test time the
// CAR that M_O predicts for an image picks the teacher whose output is scored.

import { initDevice } from "../engine/device.ts";
import type { CheckedDataset, PairInfo } from "../data/dataset.ts";
import {
  buildManifest,
  type Manifest,
  type PartitionScheme,
  readManifest,
  writeManifest,
} from "../data/partition.ts";
import { opRequests } from "./member_requests.ts";
import { trainMember } from "./member_unit.ts";
import type { Confusion, MetricsReport } from "./metrics.ts";
import { evalWindow, type TrainConfig } from "./config.ts";
import type { ChangeDetector } from "../models/model.ts";
import { type CrossTable, crossTable } from "./cross_table.ts";
import { loadMember, manifestPath, originalDir, teacherDir } from "./members.ts";
import { opOnSplit, type RoutedImage, type SplitOutcome } from "./op_eval.ts";
import { checkTeacherInit, type TeacherInit } from "./teacher_init.ts";

export { opMembers } from "./member_requests.ts";
export { routeByPredictedCar } from "./op_eval.ts";

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
  /** Hard routing by M_O's predicted CAR (the paper's O-P). */
  op: MetricsReport;
  /** Routing by ground-truth CAR (perfect routing's upper bound). */
  oracle: MetricsReport;
  /** Soft routing near the thresholds (a margin > 0 only). */
  soft: SplitOutcome["soft"];
  /** Per test image: ground-truth and routed (predicted) partition. */
  routing: RoutedImage[];
  /** routingConfusion[truth][routed] = images. */
  routingConfusion: number[][];
  routingAccuracy: number;
  /** Counts per test image for each strategy, by name (reports, MTKD comparison). */
  counts: { original: Map<string, Confusion>; op: Map<string, Confusion> };
  /** Each member on each partition's validation images (null without validation pairs). */
  cross: CrossTable | null;
  /** The routed ensemble on the validation split (soft with a margin), for choosing K. */
  val: SplitOutcome | null;
}

/** Train (or reuse) M_O and the teachers, then evaluate O-P on the test split. */
export async function runOp(
  base: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  log: (s: string) => void = console.error,
  quiet = false,
  margin = 0,
  teacherInit: TeacherInit = "scratch",
): Promise<OpResult> {
  await initDevice();
  await trainOpMembers(base, ds, scheme, dir, log, quiet, teacherInit);
  return await evaluateOp(base.model, ds, scheme, dir, base, margin);
}

/** Refuse a folder of the other teacher init, then write the partition manifest with the
 * teachers' init beside it (op, op --member K). */
export async function writeOpManifest(
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  teacherInit: TeacherInit,
): Promise<void> {
  checkTeacherInit(dir, scheme, teacherInit);
  await Deno.mkdir(dir, { recursive: true });
  await writeManifestAtomic(manifestPath(dir), { ...buildManifest(ds.train, scheme), teacherInit });
}

/** Train (or reuse) M_O and then the teachers (which may start from M_O's weights), writing
 * the partition manifest first. */
export async function trainOpMembers(
  base: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  log: (s: string) => void = console.error,
  quiet = false,
  teacherInit: TeacherInit = "scratch",
): Promise<void> {
  await writeOpManifest(ds, scheme, dir, teacherInit);
  for (const req of opRequests(base, ds, scheme, dir, teacherInit)) {
    await trainMember(req, { dataset: ds, log, quiet, hint: MEMBER_HINT });
  }
}

/** O-P on the test split (and, for the cross table and the choice of K, the validation
 * split): every member on every image, routed by M_O's predicted CAR, softly within `margin`. */
export async function evaluateOp(
  model: string,
  splits: { test: PairInfo[]; val: PairInfo[] },
  scheme: PartitionScheme,
  dir: string,
  cfg: Pick<TrainConfig, "batch" | "size">,
  margin = 0,
): Promise<OpResult> {
  await initDevice();
  if (splits.test.length === 0) throw new Error("the dataset has no test split to evaluate O-P on");
  const opts = evalWindow({ ...cfg, model });
  const original = loadMember(model, originalDir(dir));
  const teachers: ChangeDetector[] = [];
  try {
    for (const n of scheme.names) teachers.push(loadMember(model, teacherDir(dir, n)));
    const test = await opOnSplit(original, teachers, splits.test, scheme, opts, margin);
    const val = splits.val.length
      ? await opOnSplit(original, teachers, splits.val, scheme, opts, margin)
      : null;
    return {
      manifest: await readManifest(manifestPath(dir)),
      original: test.original,
      op: test.op,
      oracle: test.oracle,
      soft: test.soft,
      routing: test.routing,
      routingConfusion: test.confusion,
      routingAccuracy: test.accuracy,
      counts: { original: test.counts.original, op: test.counts.op },
      cross: val && crossTable(val, scheme, "validation"),
      val,
    };
  } finally {
    for (const m of [original, ...teachers]) m.dispose();
  }
}
