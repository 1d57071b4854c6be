// deno task op --model NAME --data ROOT --out DIR [--teachers 2|3] [budget flags]

import { z } from "zod";
import { runOpOnly } from "../train/experiment.ts";
import { BUDGET_HELP, BudgetFlags, memberConfig, SchemeFlags, schemeOf } from "./method_flags.ts";
import { runCommand } from "./run.ts";

const HELP =
  `O-P (Origin-Partition): train M_O on all training pairs and one teacher per CAR partition
(from scratch, same recipe), then evaluate on the test split with each image routed to the
teacher that M_O's predicted CAR picks.

Usage:
  deno task op --model NAME --data ROOT --out DIR [--teachers 2|3 | --thresholds ...] [flags]

DIR receives partition.json, original/, teacher_<name>/ (each a train run folder), report.html
and results.json (M_O and O-P metrics, routing accuracy and its confusion table). Members that
are already trained in DIR are reused; an interrupted member resumes.

  --model NAME           registry name (deno task models)
  --data ROOT            dataset root
  --out DIR              experiment folder
  --teachers 2|3         partition scheme (default 3: 0.05 / 0.2)
  --thresholds a,b       custom CAR thresholds
${BUDGET_HELP}
`;

const Flags = z.object({
  model: z.string(),
  data: z.string(),
  out: z.string(),
  ...SchemeFlags,
  ...BudgetFlags,
});

runCommand(import.meta, { help: HELP, flags: Flags }, async (f) => {
  const { teachers, thresholds, out, ...rest } = f;
  await runOpOnly(memberConfig(rest, out), out, schemeOf({ teachers, thresholds }));
});
