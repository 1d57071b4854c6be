// op --emit slurm|k8s DIR: the command's flags become the cluster jobs of train/job_plan.ts,
// written by train/slurm_emit.ts or train/k8s_emit.ts. Paths are made absolute (Slurm) or
// checked to lie on the shared volume (Kubernetes).

import { isAbsolute, relative, resolve } from "node:path";
import { z } from "zod";
import { LAMBDA_GRID } from "../train/distill.ts";
import { planJobs } from "../train/job_plan.ts";
import { writeK8s } from "../train/k8s_emit.ts";
import { writeSlurm } from "../train/slurm_emit.ts";
import { modelEntry } from "../models/registry.ts";
import type { TeacherInit } from "../train/teacher_init.ts";

export const EmitFlags = {
  emit: z.enum(["slurm", "k8s"]).optional(),
  studentIters: z.number().int().positive().optional(),
  lambda: z.number().nonnegative().optional(),
  lambdaGrid: z.boolean().default(false),
  gres: z.string().default("gpu:1"),
  slurmPartition: z.string().optional(),
  k8sImage: z.string().default("cd-engine:latest"),
  k8sClaim: z.string().default("cd-shared"),
  k8sMount: z.string().default("/shared"),
  k8sWorkdir: z.string().default("/app"),
};

export const EMIT_HELP = `Cluster jobs (members as separate, restartable units):
  --member K             train member K only (0 = M_O, 1..P = teachers) into DIR and leave
                         its marker DIR/<member>/member.json; K comes from SLURM_ARRAY_TASK_ID
                         or JOB_COMPLETION_INDEX when the flag is absent. A finished member
                         with the same settings is a no-op; one with other settings stops the
                         call; an interrupted one resumes
  --route-only           routing + evaluation only: every member must be finished (markers)
                         with these settings, else the call names the missing ones
  --allow-software-adapter
                         let a GPU job (--member, or any Slurm / emitted Kubernetes job) run on
                         a CPU (software) adapter; without it such a job stops
  --emit slurm|k8s JOBDIR
                         write the cluster jobs to JOBDIR instead of training, and print the
                         one-line submit command (JOBDIR/submit.sh, JOBDIR/submit-k8s.sh);
                         with --teacher-init original M_O's job (original) runs first, then
                         the teachers' array (teachers, members 1..P)
  With --emit only:
  --student-iters N      the students' iterations in the emitted distill job (default iters/2)
  --lambda X | --lambda-grid
                         the λ of the emitted distill job (a grid: one array task per λ)
  --gres G               Slurm: each task's --gres (default gpu:1; "none" omits the line)
  --slurm-partition P    Slurm: #SBATCH --partition
  --k8s-image IMAGE      Kubernetes: the image holding this repository (default cd-engine:latest)
  --k8s-workdir PATH     Kubernetes: the repository inside the image (default /app)
  --k8s-claim NAME       Kubernetes: the shared PersistentVolumeClaim (default cd-shared)
  --k8s-mount PATH       Kubernetes: where it is mounted (default /shared); --data and --out
                         must lie under it`;

export interface EmitRequest {
  emit: "slurm" | "k8s";
  dir: string;
  model: string;
  data: string;
  out: string;
  /** Teachers (partitions) of the O-P run. */
  partitions: number;
  /** Scheme and budget flags as given (undefined: not given). */
  flags: Record<string, unknown>;
  /** --teacher-init as given: original puts M_O's job before the teachers'. */
  teacherInit?: TeacherInit;
  iters?: number;
  studentIters?: number;
  lambda?: number;
  lambdaGrid: boolean;
  allowSoftwareAdapter: boolean;
  gres: string;
  slurmPartition?: string;
  k8s: { image: string; claim: string; mount: string; workdir: string };
}

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Write the jobs; returns the one-line submit command. */
export function emitJobs(r: EmitRequest): string {
  if (r.lambda !== undefined && r.lambdaGrid) {
    throw new Error("give --lambda or --lambda-grid, not both");
  }
  const lambdas = r.lambdaGrid ? LAMBDA_GRID : [r.lambda ?? modelEntry(r.model).recipe.lambda];
  let data = r.data, out = r.out;
  if (r.emit === "slurm") {
    data = resolve(data);
    out = resolve(out);
  } else {
    for (const [flag, p] of [["--data", data], ["--out", out]]) {
      const rel = relative(r.k8s.mount, p);
      if (!isAbsolute(p) || rel.startsWith("..") || isAbsolute(rel)) {
        throw new Error(
          `${flag} ${p}: not under --k8s-mount ${r.k8s.mount}; the pods see the shared volume ` +
            "only there: give the path as the pods see it",
        );
      }
    }
  }
  const iters = r.iters ?? 2000;
  const plan = planJobs({
    name: `${r.model}-${out.split("/").filter((s) => s).at(-1) ?? "run"}`,
    members: 1 + r.partitions,
    lambdas,
    common: {
      model: r.model,
      data,
      ...r.flags,
      allowSoftwareAdapter: r.allowSoftwareAdapter || undefined,
    },
    out,
    memberIters: r.iters,
    studentIters: r.studentIters ?? Math.max(1, Math.floor(iters / 2)),
    teacherInit: r.teacherInit,
  });
  return r.emit === "slurm"
    ? writeSlurm(plan, resolve(r.dir), {
      workdir: REPO,
      gres: r.gres === "none" ? null : r.gres,
      partition: r.slurmPartition,
    })
    : writeK8s(plan, resolve(r.dir), r.k8s);
}
