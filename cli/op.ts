// deno task op --model NAME --data ROOT --out DIR [--teachers 2|3|auto | --thresholds … |
//   --auto --teachers K] [--route-margin M] [--teacher-init scratch|original] [budget flags]
//   [--member K | --route-only | --emit slurm|k8s JOBDIR]

import { z } from "zod";
import { checkedDataset, runOpOnly } from "../train/experiment.ts";
import { runOpAuto } from "../train/op_auto.ts";
import { partitionCount } from "../data/partition_auto.ts";
import { runOpMember } from "../train/member_commands.ts";
import { unitIndex } from "../train/array_index.ts";
import { checkJobAdapter, isGpuJob, jobKind } from "../train/gpu_job.ts";
import {
  BUDGET_HELP,
  BudgetFlags,
  MARGIN_HELP,
  MarginFlags,
  memberConfig,
  SCHEME_HELP,
  SchemeFlags,
  schemeOf,
  TEACHER_INIT_HELP,
  TeacherInitFlags,
} from "./method_flags.ts";
import { EMIT_HELP, EmitFlags, emitJobs } from "./jobs_emit.ts";
import { runCommand } from "./run.ts";

const HELP =
  `O-P (Origin-Partition): train M_O on all training pairs and one teacher per CAR partition
(from scratch, same recipe; --teacher-init original: from M_O's weights), then evaluate on the
test split with each image routed to the teacher that M_O's predicted CAR picks.

Usage:
  deno task op --model NAME --data ROOT --out DIR [--teachers 2|3 | --thresholds ...] [flags]
  deno task op ... --member K            one member alone (a cluster array task)
  deno task op ... --route-only            routing + evaluation of members trained alone
  deno task op ... --emit slurm|k8s JOBDIR   write the cluster jobs, print the submit command

DIR receives partition.json, original/, teacher_<name>/ (each a train run folder, ending with
member.json once finished), report.html and results.json: M_O, O-P (routed by M_O's predicted
CAR), O-P with oracle routing (by ground-truth CAR: the upper bound), routing accuracy and its
confusion table (truth × routed), and each member's mIoU / mFscore on each partition's
validation images (the cross table). Every teacher runs on every test and validation image for
these. Members that are already trained in DIR are reused; an interrupted member resumes.
partition.json records --teacher-init (each teacher's config.json its starting weights), and
the report states it.

--teachers auto chooses the teacher count: for K = 1..4, K equal-count CAR partitions of the
training set (DIR/kK/, each a complete O-P folder sharing DIR/original), each K's teachers
trained, and K chosen by the routed ensemble's validation mIoU (ties: fewer teachers). The
per-K scores and the choice go to the console, DIR/auto.json and DIR/report.html (the chosen
K's results). distill then takes --from DIR/kK --auto --teachers K.

  --model NAME           registry name (deno task models)
  --data ROOT            dataset root
  --out DIR              experiment folder
${SCHEME_HELP}
  --teachers auto        choose K in 1..4 as above (paper's fixed 0.05 / 0.2 stay the default)
${MARGIN_HELP}
${TEACHER_INIT_HELP}
${BUDGET_HELP}

${EMIT_HELP}
`;

const Flags = z.object({
  model: z.string(),
  data: z.string(),
  out: z.string(),
  member: z.number().int().nonnegative().optional(),
  routeOnly: z.boolean().default(false),
  allowSoftwareAdapter: z.boolean().default(false),
  ...EmitFlags,
  ...SchemeFlags,
  ...MarginFlags,
  ...TeacherInitFlags,
  ...BudgetFlags,
});

export const OP_SPEC = { help: HELP, flags: Flags, positionals: true };

/** The command's body below its flags; tests run it in this process (cli/run.ts runInProcess). */
export async function opCommand(f: z.output<typeof Flags> & { _?: string[] }): Promise<void> {
  const {
    teachers,
    thresholds,
    auto,
    routeMargin,
    teacherInit,
    out,
    member,
    routeOnly,
    allowSoftwareAdapter,
    emit,
    studentIters,
    lambda,
    lambdaGrid,
    gres,
    slurmPartition,
    k8sImage,
    k8sClaim,
    k8sMount,
    k8sWorkdir,
    _: positionals = [],
    ...rest
  } = f;
  const scheme = schemeOf({ teachers, thresholds, auto }, { select: true });
  const partitions = partitionCount(scheme);
  if (partitions === null && (emit || member !== undefined || routeOnly)) {
    throw new Error(
      "--teachers auto trains every K in this one call: for one member, --route-only or " +
        "cluster jobs give --auto --teachers K (and --out DIR/kK for a K that auto trained)",
    );
  }
  if (emit) {
    if (positionals.length !== 1) {
      throw new Error(`--emit ${emit} takes one folder: --emit ${emit} JOBDIR`);
    }
    if (member !== undefined || routeOnly) {
      throw new Error("--emit writes the jobs of every member: leave out --member / --route-only");
    }
    const { model, data, iters, ...budget } = rest;
    const line = emitJobs({
      emit,
      dir: positionals[0],
      model,
      data,
      out,
      partitions: partitions!,
      flags: { teachers, thresholds, auto: auto || undefined, ...budget },
      teacherInit,
      iters,
      studentIters,
      lambda,
      lambdaGrid,
      allowSoftwareAdapter,
      gres,
      slurmPartition,
      k8s: { image: k8sImage, claim: k8sClaim, mount: k8sMount, workdir: k8sWorkdir },
    });
    console.error(`jobs written to ${positionals[0]}; submit with:`);
    console.log(line);
    return;
  }
  if (positionals.length) {
    throw new Error(`unexpected argument ${positionals[0]} (only --emit takes a folder)`);
  }
  const emitOnly = { studentIters, lambda, lambdaGrid: lambdaGrid || undefined };
  const stray = Object.entries(emitOnly).find(([, v]) => v !== undefined);
  if (stray) {
    throw new Error(
      `--${stray[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is for the emitted ` +
        "distillation job (--emit slurm|k8s JOBDIR); distil with deno task distill",
    );
  }
  if (member !== undefined && routeOnly) throw new Error("give --member or --route-only, not both");
  const unit = routeOnly ? null : unitIndex(member, "--member");
  if (isGpuJob(unit !== null)) {
    await checkJobAdapter({
      allowSoftware: allowSoftwareAdapter,
      why: unit ? `member ${unit.index} (from ${unit.from}) is a GPU job` : jobKind(),
    });
  }
  const cfg = memberConfig(rest, out);
  const init = teacherInit ?? "scratch";
  if (unit) await runOpMember(cfg, out, scheme, unit.index, console.error, init);
  else if (partitions === null) {
    const ds = await checkedDataset(cfg, console.error);
    await runOpAuto(cfg, out, ds, console.error, routeMargin, undefined, init);
  } else {
    await runOpOnly(cfg, out, scheme, console.error, {
      routeOnly,
      margin: routeMargin,
      teacherInit: init,
    });
  }
}

runCommand(import.meta, OP_SPEC, opCommand);
