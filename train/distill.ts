// MTKD, the JL1-CD paper's second strategy: a student initialised from M_O is trained on every
// training pair with L = L_CE + λ·MSE(student logits, teacher logits), each sample's teacher
// chosen by its ground-truth CAR; teachers are frozen (eval mode, no gradient). Only the
// student runs at inference.

import { initDevice } from "../engine/device.ts";
import { noGrad } from "../engine/autograd.ts";
import { add, mul } from "../engine/ops/elementwise.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";
import type { CheckedDataset } from "../data/dataset.ts";
import { neighbourPartitions, partitionOf, type PartitionScheme } from "../data/partition.ts";
import type { Batch } from "../data/loader.ts";
import type { ChangeDetector } from "../models/model.ts";
import { evalWindow, type TrainConfig } from "./config.ts";
import { evaluateModel } from "./evaluate.ts";
import { loadMember, teacherDir } from "./members.ts";
import { studentRequests } from "./member_requests.ts";
import { trainMember } from "./member_unit.ts";
import { MEMBER_HINT } from "./op.ts";
import type { Confusion, MetricsReport } from "./metrics.ts";

/** The paper's λ grid. */
export const LAMBDA_GRID = [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2];

/** A sample's teacher: its partition, or the two neighbours averaged (soft targets). */
export type Owner = number | [number, number];

/** Weight of teacher k in a sample's target. */
const weightOf = (o: Owner, k: number) =>
  typeof o === "number" ? (o === k ? 1 : 0) : (o[0] === k ? 0.5 : 0) + (o[1] === k ? 0.5 : 0);

/**
 * Teacher logits for a batch: every teacher that owns at least one sample of the batch runs on
 * the whole batch, and per-sample masks keep the owner's logits (one-hot, or ½ and ½ for a
 * sample near a threshold: the mean of both neighbours' logits). Teachers run in eval mode
 * under noGrad, so they receive no gradient and never change.
 */
export function teacherLogits(
  teachers: ChangeDetector[],
  ownerOfSample: (batchIndex: number) => Owner,
  a: Tensor,
  b: Tensor,
  batchSize: number,
): Tensor {
  return noGrad(() => {
    const owner = Array.from({ length: batchSize }, (_, i) => ownerOfSample(i));
    let out: Tensor | null = null;
    teachers.forEach((t, k) => {
      if (!owner.some((o) => weightOf(o, k) > 0)) return;
      const mask = tensor(owner.map((o) => weightOf(o, k)), [batchSize, 1, 1, 1]);
      const part = mul(t.distillTarget ? t.distillTarget(a, b) : t.forward(a, b), mask);
      out = out ? add(out, part) : part;
    });
    return out!;
  });
}

export interface StudentResult {
  lambda: number;
  runDir: string;
  bestValMIoU: number;
  test: MetricsReport;
  counts: Map<string, Confusion>;
}

/** A training sample's teacher by its ground-truth CAR; within `margin` of a threshold, both
 * neighbours (distill --route-margin). */
export function ownerByCar(car: number, scheme: PartitionScheme, margin = 0): Owner {
  return neighbourPartitions(car, scheme.thresholds, margin) ??
    partitionOf(car, scheme.thresholds);
}

/** Training pairs whose target is the mean of two teachers (logged once per call). */
export function softTargetCount(cars: number[], scheme: PartitionScheme, margin: number): number {
  return cars.filter((c) => neighbourPartitions(c, scheme.thresholds, margin)).length;
}

/** Train (or resume, or reuse) the MTKD student of each λ, the teachers loaded once. */
export async function trainStudents(
  base: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  lambdas: number[],
  log: (s: string) => void = console.error,
  quiet = false,
  kdMargin = 0,
): Promise<{ lambda: number; bestValMIoU: number; runDir: string }[]> {
  await initDevice();
  const teachers = scheme.names.map((n) => loadMember(base.model, teacherDir(dir, n)));
  const carOf = new Map(ds.train.map((p) => [p.name, p.car]));
  if (kdMargin > 0) {
    const n = softTargetCount(ds.train.map((p) => p.car), scheme, kdMargin);
    log(
      `soft targets: ${n} of ${ds.train.length} training pairs lie within ${kdMargin} of a ` +
        "threshold and learn from the mean of both neighbouring teachers",
    );
  }
  const teacher = (a: Tensor, b: Tensor, batch: Batch) =>
    teacherLogits(
      teachers,
      (i) => ownerByCar(carOf.get(batch.names[i])!, scheme, kdMargin),
      a,
      b,
      batch.size,
    );
  try {
    const tried = [];
    for (const req of studentRequests(base, ds, dir, lambdas, kdMargin)) {
      const m = await trainMember(req, { dataset: ds, log, quiet, hint: MEMBER_HINT, teacher });
      tried.push({ lambda: req.lambda!, bestValMIoU: m.best?.mIoU ?? 0, runDir: req.runDir });
    }
    return tried;
  } finally {
    for (const t of teachers) t.dispose();
  }
}

export interface DistillOptions {
  /** Soft targets within this CAR distance of a threshold (0: each sample's own teacher). */
  kdMargin?: number;
  /** Also train the λ = 0 control: the same student schedule from M_O, without a teacher. */
  control?: boolean;
}

/** Train (or reuse) the MTKD student for each λ; pick by validation mIoU; evaluate on test.
 * With `control`, also the λ = 0 student, evaluated beside it (never chosen as MTKD). */
export async function runDistill(
  base: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  lambdas: number[],
  log: (s: string) => void = console.error,
  quiet = false,
  o: DistillOptions = {},
): Promise<{
  chosen: StudentResult;
  all: { lambda: number; bestValMIoU: number }[];
  control: StudentResult | null;
}> {
  const tried = await trainStudents(base, ds, scheme, dir, lambdas, log, quiet, o.kdMargin);
  const best = tried.reduce((p, c) => (c.bestValMIoU > p.bestValMIoU ? c : p));
  const chosen = await testStudent(base, ds, best);
  let control: StudentResult | null = null;
  if (o.control) {
    const [c] = await trainStudents(base, ds, scheme, dir, [0], log, quiet);
    control = await testStudent(base, ds, c);
  }
  return {
    chosen,
    all: tried.map(({ lambda, bestValMIoU }) => ({ lambda, bestValMIoU })),
    control,
  };
}

async function testStudent(
  base: TrainConfig,
  ds: CheckedDataset,
  s: { lambda: number; bestValMIoU: number; runDir: string },
): Promise<StudentResult> {
  const student = loadMember(base.model, s.runDir);
  const res = await evaluateModel(student, ds.test, evalWindow(base));
  student.dispose();
  return {
    ...s,
    test: res.report,
    counts: new Map(res.perImage.map((r) => [r.name, r.counts])),
  };
}
