// MTKD, the JL1-CD paper's second strategy: a student initialised from M_O is trained on every
// training pair with L = L_CE + λ·MSE(student logits, teacher logits), each sample's teacher
// chosen by its ground-truth CAR; teachers are frozen (eval mode, no gradient). Only the
// student runs at inference.

import { initDevice } from "../engine/device.ts";
import { noGrad } from "../engine/autograd.ts";
import { add, mul } from "../engine/ops/elementwise.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";
import type { CheckedDataset } from "../data/dataset.ts";
import { partitionOf, type PartitionScheme } from "../data/partition.ts";
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

/**
 * Teacher logits for a batch: every teacher that owns at least one sample of the batch runs on
 * the whole batch, and per-sample one-hot masks keep the owner's logits. Teachers run in eval
 * mode under noGrad, so they receive no gradient and never change.
 */
export function teacherLogits(
  teachers: ChangeDetector[],
  partitionOfSample: (batchIndex: number) => number,
  a: Tensor,
  b: Tensor,
  batchSize: number,
): Tensor {
  return noGrad(() => {
    const owner = Array.from({ length: batchSize }, (_, i) => partitionOfSample(i));
    let out: Tensor | null = null;
    teachers.forEach((t, k) => {
      if (!owner.includes(k)) return;
      const mask = tensor(owner.map((o) => (o === k ? 1 : 0)), [batchSize, 1, 1, 1]);
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

/** Train (or resume, or reuse) the MTKD student of each λ, the teachers loaded once. */
export async function trainStudents(
  base: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  lambdas: number[],
  log: (s: string) => void = console.error,
  quiet = false,
): Promise<{ lambda: number; bestValMIoU: number; runDir: string }[]> {
  await initDevice();
  const teachers = scheme.names.map((n) => loadMember(base.model, teacherDir(dir, n)));
  const carOf = new Map(ds.train.map((p) => [p.name, p.car]));
  const teacher = (a: Tensor, b: Tensor, batch: Batch) =>
    teacherLogits(
      teachers,
      (i) => partitionOf(carOf.get(batch.names[i])!, scheme.thresholds),
      a,
      b,
      batch.size,
    );
  try {
    const tried = [];
    for (const req of studentRequests(base, ds, dir, lambdas)) {
      const m = await trainMember(req, { dataset: ds, log, quiet, hint: MEMBER_HINT, teacher });
      tried.push({ lambda: req.lambda!, bestValMIoU: m.best?.mIoU ?? 0, runDir: req.runDir });
    }
    return tried;
  } finally {
    for (const t of teachers) t.dispose();
  }
}

/** Train (or reuse) the MTKD student for each λ; pick by validation mIoU; evaluate on test. */
export async function runDistill(
  base: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  lambdas: number[],
  log: (s: string) => void = console.error,
  quiet = false,
): Promise<{ chosen: StudentResult; all: { lambda: number; bestValMIoU: number }[] }> {
  const tried = await trainStudents(base, ds, scheme, dir, lambdas, log, quiet);
  const best = tried.reduce((p, c) => (c.bestValMIoU > p.bestValMIoU ? c : p));
  const student = loadMember(base.model, best.runDir);
  const res = await evaluateModel(student, ds.test, evalWindow(base));
  student.dispose();
  return {
    chosen: {
      lambda: best.lambda,
      runDir: best.runDir,
      bestValMIoU: best.bestValMIoU,
      test: res.report,
      counts: new Map(res.perImage.map((r) => [r.name, r.counts])),
    },
    all: tried.map(({ lambda, bestValMIoU }) => ({ lambda, bestValMIoU })),
  };
}
