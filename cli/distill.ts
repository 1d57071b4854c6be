// deno task distill --model NAME --data ROOT --from DIR [--lambda X | --lambda-grid] [flags]

import { z } from "zod";
import { LAMBDA_GRID } from "../train/distill.ts";
import { runDistillOnly } from "../train/experiment.ts";
import { runStudentMember } from "../train/member_commands.ts";
import { unitIndex } from "../train/array_index.ts";
import { checkJobAdapter, isGpuJob, jobKind } from "../train/gpu_job.ts";
import { modelEntry } from "../models/registry.ts";
import {
  BUDGET_HELP,
  BudgetFlags,
  MARGIN_HELP,
  MarginFlags,
  memberConfig,
  SCHEME_HELP,
  SchemeFlags,
  schemeOf,
  TeacherInitFlags,
} from "./method_flags.ts";
import { runCommand } from "./run.ts";

const HELP = `MTKD: distil the O-P teachers into one student initialised from M_O.

Usage:
  deno task distill --model NAME --data ROOT --from DIR [--lambda X | --lambda-grid] [flags]

DIR is the folder of a finished \`deno task op\` run (original/ and teacher_<name>/). The student
trains on every training pair with L = CE + λ·MSE(student logits, teacher logits), the teacher
of each sample picked by its ground-truth CAR (teachers frozen, eval mode). It is written to
DIR/student_<λ>/; DIR/report.html and results.json then hold Original, O-P, O-P with oracle
routing, MTKD and, with --control, the λ = 0 control (DIR/student_0/: the same schedule from
M_O with CE alone, so a gain over it is the teachers', not the extra training's). Every
O-P member must be finished (DIR/<member>/member.json, from \`deno task op\`); the call names
the missing ones before it loads any.

  --model NAME           registry name
  --data ROOT            dataset root (the one the teachers were trained on)
  --from DIR             the O-P experiment folder
  --lambda X             KD weight (default: the model's recipe)
  --lambda-grid          try the paper's grid {1e-5 … 1e-2}, pick by validation mIoU
  --control              also train and report the λ = 0 control (--lambda 0 alone trains
                         only the control, reported as MTKD)
  --lambda-index K       train the student of the K-th λ asked for only (0-based; with
                         --lambda-grid one array task per λ) and leave its marker; K comes from
                         SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX when the flag is absent
  --allow-software-adapter
                         let a GPU job (--lambda-index, or any Slurm / emitted Kubernetes job)
                         run on a CPU (software) adapter; without it such a job stops
${SCHEME_HELP}
                         (all as the O-P run: for op --teachers auto, --from DIR/kK --auto
                         --teachers K)
${MARGIN_HELP}
                         (a student with a margin is written to DIR/student_<λ>_margin<M>/)
  --teacher-init scratch|original
                         optional: how op started the teachers; given, DIR's teachers must have
                         started so (the report states it either way, from their config.json)
${BUDGET_HELP}
  (--iters is the student's budget; the paper trains it half as long as M_O.)
`;

const Flags = z.object({
  model: z.string(),
  data: z.string(),
  from: z.string(),
  lambda: z.number().nonnegative().optional(),
  lambdaGrid: z.boolean().default(false),
  lambdaIndex: z.number().int().nonnegative().optional(),
  control: z.boolean().default(false),
  allowSoftwareAdapter: z.boolean().default(false),
  ...SchemeFlags,
  ...MarginFlags,
  ...TeacherInitFlags,
  ...BudgetFlags,
});

export const DISTILL_SPEC = { help: HELP, flags: Flags };

/** The command's body below its flags; tests run it in this process (cli/run.ts runInProcess). */
export async function distillCommand(f: z.output<typeof Flags> & { _?: string[] }): Promise<void> {
  const {
    teachers,
    thresholds,
    auto,
    routeMargin,
    control,
    from,
    lambda,
    lambdaGrid,
    lambdaIndex,
    allowSoftwareAdapter,
    teacherInit,
    ...rest
  } = f;
  if (lambda !== undefined && lambdaGrid) {
    throw new Error("give --lambda or --lambda-grid, not both");
  }
  const lambdas = lambdaGrid ? LAMBDA_GRID : [lambda ?? modelEntry(f.model).recipe.lambda];
  const scheme = schemeOf({ teachers, thresholds, auto });
  const unit = unitIndex(lambdaIndex, "--lambda-index");
  if (isGpuJob(unit !== null)) {
    await checkJobAdapter({
      allowSoftware: allowSoftwareAdapter,
      why: unit ? `student ${unit.index} (from ${unit.from}) is a GPU job` : jobKind(),
    });
  }
  const cfg = memberConfig(rest, from);
  if (unit) {
    if (control) throw new Error("--control: train the control as its own unit with --lambda 0");
    await runStudentMember(
      cfg,
      from,
      scheme,
      lambdas,
      unit.index,
      console.error,
      routeMargin,
      teacherInit,
    );
  } else {
    await runDistillOnly(cfg, from, scheme, lambdas, console.error, {
      margin: routeMargin,
      control,
      teacherInit,
    });
  }
}

runCommand(import.meta, DISTILL_SPEC, distillCommand);
