// A job plan (train/job_plan.ts) as Slurm batch scripts: one sbatch file per stage (an array job
// for the members and, with a λ grid, the students; one GPU each through --gres, a log file per
// task), and submit.sh, which submits them chained with --dependency=afterok. The run folder and
// the data must lie on a file system every node sees; the scripts use absolute paths.

import { join } from "node:path";
import type { JobPlan, JobStage } from "./job_plan.ts";

export interface SlurmOptions {
  /** The repository the tasks run `deno task` in (absolute). */
  workdir: string;
  /** The --gres of each task ("gpu:1"), or null for none (a test cluster without GPUs). */
  gres: string | null;
  /** #SBATCH --partition, when given. */
  partition?: string;
}

/** Quote a word for bash. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The array's indices, first-last (the teachers after M_O's own job: 1-P). */
const arrayRange = (st: JobStage) => {
  const first = st.firstIndex ?? 0;
  return `${first}-${first + st.tasks! - 1}`;
};

function script(plan: JobPlan, st: JobStage, dir: string, o: SlurmOptions): string {
  const logs = join(dir, "logs");
  const lines = [
    "#!/bin/bash",
    `#SBATCH --job-name=${plan.name}-${st.name}`,
    ...(st.tasks !== null ? [`#SBATCH --array=${arrayRange(st)}`] : []),
    ...(o.gres ? [`#SBATCH --gres=${o.gres}`] : []),
    ...(o.partition ? [`#SBATCH --partition=${o.partition}`] : []),
    "#SBATCH --ntasks=1",
    st.tasks !== null
      ? `#SBATCH --output=${logs}/${st.name}_%A_%a.log`
      : `#SBATCH --output=${logs}/${st.name}_%j.log`,
    "# Each task must see exactly one GPU (cgroup.conf: ConstrainDevices=yes): Deno's WebGPU",
    "# cannot pick a GPU, and a task that sees none stops on the software adapter.",
    "set -euo pipefail",
    `cd ${shellQuote(o.workdir)}`,
    `exec ${st.argv.map(shellQuote).join(" ")}${
      st.indexFlag ? ` ${st.indexFlag} "$SLURM_ARRAY_TASK_ID"` : ""
    }`,
  ];
  return lines.join("\n") + "\n";
}

/** The one-line submit command (also the body of submit.sh). */
export function slurmSubmitLine(plan: JobPlan, dir: string): string {
  const file = (st: JobStage) => shellQuote(join(dir, `${st.name}.sbatch`));
  const vars = plan.stages.map((_, i) => `j${i}`);
  return plan.stages.map((st, i) =>
    `${vars[i]}=$(sbatch --parsable ${i ? `--dependency=afterok:\${${vars[i - 1]}%%;*} ` : ""}${
      file(st)
    })`
  ).join(" && ") + ` && echo "submitted: ${
    plan.stages.map((st, i) => `${st.name}=\${${vars[i]}%%;*}`).join(" ")
  }"`;
}

/** Write DIR/<stage>.sbatch, DIR/submit.sh and DIR/logs/; returns the submit line. */
export function writeSlurm(plan: JobPlan, dir: string, o: SlurmOptions): string {
  Deno.mkdirSync(join(dir, "logs"), { recursive: true });
  for (const st of plan.stages) {
    Deno.writeTextFileSync(join(dir, `${st.name}.sbatch`), script(plan, st, dir, o));
  }
  const line = slurmSubmitLine(plan, dir);
  Deno.writeTextFileSync(join(dir, "submit.sh"), `#!/bin/bash\nset -euo pipefail\n${line}\n`, {
    mode: 0o755,
  });
  return line;
}
