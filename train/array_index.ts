// Which unit of an array job this process is: the flag when given (op --member K, distill
// --lambda-index K), else the scheduler's index, SLURM_ARRAY_TASK_ID (a Slurm job array's task)
// or JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's pod). Nothing of the three: not a unit.

export const INDEX_VARS = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] as const;

export interface UnitIndex {
  index: number;
  /** Where it came from: the flag's name or the environment variable. */
  from: string;
}

/** The unit index from `flag` (named `flagName` in messages) or the environment. */
export function unitIndex(
  flag: number | undefined,
  flagName: string,
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
): UnitIndex | null {
  if (flag !== undefined) return { index: flag, from: flagName };
  for (const v of INDEX_VARS) {
    const raw = env(v);
    if (raw === undefined || raw === "") continue;
    if (!/^\d+$/.test(raw.trim())) {
      throw new Error(`${v}=${raw}: not a task index (0, 1, …); give ${flagName} K instead`);
    }
    return { index: Number(raw), from: v };
  }
  return null;
}
