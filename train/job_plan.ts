// The jobs of an O-P / MTKD experiment on a cluster, independent of the scheduler: stage 1 trains
// the members (an array, one task per member: 0 = M_O, 1..P = teachers; with --teacher-init
// original the teachers start from M_O's weights, so M_O is a job of its own and the teachers'
// array, indices 1..P, follows it), then the MTKD students (an array over λ, only when more than
// one λ is asked for), and the last stage runs
// `distill` over the finished members, which trains nothing more, evaluates Original, O-P and
// MTKD and writes the report. Each stage starts once every task of the one before succeeded.
// train/slurm_emit.ts and train/k8s_emit.ts write it for their scheduler.

import type { TeacherInit } from "./teacher_init.ts";

export interface JobStage {
  /** members, students, distill. */
  name: string;
  /** Array tasks (0..tasks-1), or null for a single job. */
  tasks: number | null;
  /** The command (argv); an array task's index is read from the scheduler's variable unless
   * `indexFlag` is given, which the emitter appends with the scheduler's variable. */
  argv: string[];
  indexFlag?: string;
  /** The array's first index (default 0): the teachers after M_O's own job start at 1. */
  firstIndex?: number;
}

export interface JobPlan {
  /** Job name prefix (lowercase letters, digits, '-'). */
  name: string;
  stages: JobStage[];
}

export interface PlanInput {
  /** The experiment's name (job names): lowercased, other characters become '-'. */
  name: string;
  /** O-P members (1 + teachers). */
  members: number;
  /** The λ the students train with. */
  lambdas: number[];
  /** Flags common to op and distill (model, data, scheme, budget but --iters), in order. */
  common: Record<string, unknown>;
  out: string;
  memberIters?: number;
  studentIters: number;
  /** op --teacher-init as given (undefined: not given, scratch). */
  teacherInit?: TeacherInit;
}

/** `--kebab-key value` for each set flag; booleans as --key / --no-key, arrays comma-joined. */
export function flagArgs(flags: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(flags)) {
    if (v === undefined || v === null) continue;
    const flag = "--" + k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    if (typeof v === "boolean") out.push(v ? flag : `--no-${flag.slice(2)}`);
    else out.push(flag, Array.isArray(v) ? v.join(",") : String(v));
  }
  return out;
}

export function jobName(s: string): string {
  const n = s.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
  return n || "cd";
}

export function planJobs(p: PlanInput): JobPlan {
  const common = { ...p.common, teacherInit: p.teacherInit };
  const op = ["deno", "task", "op", ...flagArgs({ ...common, out: p.out, iters: p.memberIters })];
  const lambdaFlags = p.lambdas.length === 1
    ? { lambda: p.lambdas[0] }
    : { lambda: undefined, lambdaGrid: true };
  const distill = [
    "deno",
    "task",
    "distill",
    ...flagArgs({ ...common, from: p.out, iters: p.studentIters, ...lambdaFlags }),
  ];
  const stages: JobStage[] = p.teacherInit === "original"
    ? [
      // Each teacher starts from M_O's finished weights: M_O's job, then the teachers' array.
      { name: "original", tasks: null, argv: [...op, "--member", "0"] },
      { name: "teachers", tasks: p.members - 1, firstIndex: 1, argv: op, indexFlag: "--member" },
    ]
    : [{ name: "members", tasks: p.members, argv: op, indexFlag: "--member" }];
  if (p.lambdas.length > 1) {
    stages.push({
      name: "students",
      tasks: p.lambdas.length,
      argv: distill,
      indexFlag: "--lambda-index",
    });
  }
  stages.push({ name: "distill", tasks: null, argv: distill });
  return { name: jobName(p.name), stages };
}
