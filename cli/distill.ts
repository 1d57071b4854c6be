// deno task distill --model NAME --data ROOT --from DIR [--lambda X | --lambda-grid] [flags]

import { z } from "zod";
import { LAMBDA_GRID } from "../train/distill.ts";
import { runDistillOnly } from "../train/experiment.ts";
import { modelEntry } from "../models/registry.ts";
import { BUDGET_HELP, BudgetFlags, memberConfig, SchemeFlags, schemeOf } from "./method_flags.ts";
import { runCommand } from "./run.ts";

const HELP = `MTKD: distil the O-P teachers into one student initialised from M_O.

Usage:
  deno task distill --model NAME --data ROOT --from DIR [--lambda X | --lambda-grid] [flags]

DIR is the folder of a finished \`deno task op\` run (original/ and teacher_<name>/). The student
trains on every training pair with L = CE + λ·MSE(student logits, teacher logits), the teacher
of each sample picked by its ground-truth CAR (teachers frozen, eval mode). It is written to
DIR/student_<λ>/; DIR/report.html and results.json then hold Original, O-P and MTKD.

  --model NAME           registry name
  --data ROOT            dataset root (the one the teachers were trained on)
  --from DIR             the O-P experiment folder
  --lambda X             KD weight (default: the model's recipe)
  --lambda-grid          try the paper's grid {1e-5 … 1e-2}, pick by validation mIoU
  --teachers 2|3         must match the O-P run (default 3)
  --thresholds a,b       custom CAR thresholds (as the O-P run)
${BUDGET_HELP}
  (--iters is the student's budget; the paper trains it half as long as M_O.)
`;

const Flags = z.object({
  model: z.string(),
  data: z.string(),
  from: z.string(),
  lambda: z.number().nonnegative().optional(),
  lambdaGrid: z.boolean().default(false),
  ...SchemeFlags,
  ...BudgetFlags,
});

runCommand(import.meta, { help: HELP, flags: Flags }, async (f) => {
  const { teachers, thresholds, from, lambda, lambdaGrid, ...rest } = f;
  if (lambda !== undefined && lambdaGrid) {
    throw new Error("give --lambda or --lambda-grid, not both");
  }
  const lambdas = lambdaGrid ? LAMBDA_GRID : [lambda ?? modelEntry(f.model).recipe.lambda];
  await runDistillOnly(memberConfig(rest, from), from, schemeOf({ teachers, thresholds }), lambdas);
});
