// deno task demo: the whole JL1-CD pipeline on the built-in synthetic benchmark —
// synth → partition → M_O and teachers → O-P evaluation → MTKD student → report.
// With no flags it is sized for a CPU with the software Vulkan driver (3–4 minutes on two
// cores); flags scale it up to the paper's setting on a GPU.

import { join } from "node:path";
import { z } from "zod";
import { ensureSynthDataset } from "../data/synth_reuse.ts";
import { initDevice } from "../engine/device.ts";
import { LAMBDA_GRID } from "../train/distill.ts";
import { runExperiment } from "../train/experiment.ts";
import { TrainingInterrupted } from "../train/trainer.ts";
import { modelEntry } from "../models/registry.ts";
import {
  MARGIN_HELP,
  MarginFlags,
  memberConfig,
  SCHEME_HELP,
  SchemeFlags,
  schemeOf,
  TEACHER_INIT_HELP,
  TeacherInitFlags,
} from "./method_flags.ts";
import { runCommand } from "./run.ts";

const HELP = `Run the JL1-CD method end to end on a synthetic JL1-like benchmark.

Usage:
  deno task demo [--out DIR] [--model NAME] [--pairs N] [--size S] [--iters N] [flags]

Steps: write the synthetic dataset (DIR/data), partition its training pairs by CAR, train M_O
and one teacher per partition, evaluate O-P on the test split (routed by M_O's predicted CAR,
and by ground-truth CAR: the oracle), distil the MTKD student from the teachers, train the λ = 0
control (the student's schedule from M_O without a teacher), and write DIR/report.html and
DIR/results.json (Tables III/IV with a row per strategy, Fig. 8, routing, the per-partition
cross table, overlays).
Running it again in the same DIR reuses everything already trained with the same settings; when
the data or a member was made with other flags (e.g. another --seed or --batch), it stops and
names them: repeat those flags, pass --retrain to make them again with the new ones, or choose
another --out. Ctrl-C stops after the current step; the same command continues.

Defaults fit a CPU-only machine (software Vulkan): 72 pairs of 32×32, FC-EF, 24 iterations per
member (3.4 min on two cores, 1.7 once the shader cache is warm). That shows the pipeline works, not which strategy wins:
the report then opens with a banner saying the comparison is noise (under 1000 iterations,
128-px images or 50 test pairs). The report has Tables III/IV, Fig. 5 (CAR of every pair),
Fig. 8, and overlays with a column per strategy (Original, O-P's routed teacher, MTKD).
For the paper's scale on a GPU, e.g.:
  deno task demo --out runs/paper --model tinycd --pairs 5000 --size 512 --iters 20000 \\
    --student-iters 10000 --val-every 1000 --batch 8

  --out DIR              experiment folder (default runs/demo)
  --model NAME           registry name (default fc_ef)
  --pairs N              synthetic pairs in all (default 72: 48 train, 12 val, 12 test)
  --size S               image size (default 32)
  --iters N              iterations per member: M_O and each teacher (default 24)
  --student-iters N      MTKD student iterations (default: iters / 2)
  --batch B              pairs per step (default 4)
  --lambda X             KD weight (default: the model's recipe)
  --lambda-grid          search the paper's λ grid (7 students)
${SCHEME_HELP}
${MARGIN_HELP}
${TEACHER_INIT_HELP}
  --val-every N          validation interval (default: iters / 2)
  --seed K               seed of data and training (default 0)
  --retrain              remake the data and retrain the members made with other flags
`;

const Flags = z.object({
  out: z.string().default("runs/demo"),
  model: z.string().default("fc_ef"),
  pairs: z.number().int().min(20).default(72),
  size: z.number().int().min(16).default(32),
  iters: z.number().int().positive().default(24),
  studentIters: z.number().int().positive().optional(),
  batch: z.number().int().positive().default(4),
  lambda: z.number().nonnegative().optional(),
  lambdaGrid: z.boolean().default(false),
  valEvery: z.number().int().positive().optional(),
  seed: z.number().int().nonnegative().default(0),
  retrain: z.boolean().default(false),
  ...SchemeFlags,
  ...MarginFlags,
  ...TeacherInitFlags,
});

export const DEMO_SPEC = { help: HELP, flags: Flags };

/** The command's body below its flags; tests run it in this process (cli/run.ts runInProcess). */
export async function demoCommand(f: z.output<typeof Flags> & { _?: string[] }): Promise<void> {
  const t0 = performance.now();
  await initDevice(); // names the adapter (runCommand)
  const data = join(f.out, "data");
  const val = Math.max(4, Math.round(f.pairs / 6)), test = val;
  await ensureSynthDataset(
    data,
    { pairs: f.pairs, size: f.size, seed: f.seed, val, test },
    f.retrain,
    console.error,
  );
  const entry = modelEntry(f.model);
  const cfg = memberConfig({
    model: f.model,
    data,
    iters: f.iters,
    batch: f.batch,
    size: f.size,
    seed: f.seed,
    valEvery: f.valEvery ?? Math.max(1, Math.floor(f.iters / 2)),
    logEvery: Math.max(1, Math.floor(f.iters / 4)),
  }, f.out);
  const lambdas = f.lambdaGrid ? LAMBDA_GRID : [f.lambda ?? entry.recipe.lambda];
  try {
    await runExperiment(cfg, f.out, {
      scheme: schemeOf(f),
      margin: f.routeMargin,
      lambdas,
      studentIters: f.studentIters ?? Math.max(1, Math.floor(f.iters / 2)),
      retrain: f.retrain,
      teacherInit: f.teacherInit,
      hint: "repeat the flags they were trained with, pass --retrain to train them again " +
        "with these, or choose another --out",
    });
  } catch (e) {
    if (!(e instanceof TrainingInterrupted)) throw e;
    throw new Error(
      `interrupted: ${e.runDir} keeps its last checkpoint` +
        (e.committed === null ? "" : ` (step ${e.committed})`) +
        `; run the same deno task demo command again to continue`,
    );
  }
  console.error(
    `demo finished in ${((performance.now() - t0) / 60000).toFixed(1)} min: ` +
      `${join(f.out, "report.html")} and ${join(f.out, "results.json")}`,
  );
}

runCommand(import.meta, DEMO_SPEC, demoCommand);
