// A job plan (train/job_plan.ts) as Kubernetes Jobs (batch/v1, written as JSON, which kubectl
// reads as it reads YAML): an Indexed Job for the members (completionMode Indexed, one pod per
// member, its index in JOB_COMPLETION_INDEX, which op reads), one for the students when there
// is a λ grid, and a plain Job for distillation; one GPU per pod (nvidia.com/gpu: 1), the shared
// volume (a PersistentVolumeClaim) mounted in every pod. Kubernetes has no dependencies between
// Jobs: submit-k8s.sh applies each one once the one before completed. An Indexed Job counts from
// 0, so a stage whose indices start later (the teachers after M_O's own Job: members 1..P) runs
// its command through sh, adding the offset to JOB_COMPLETION_INDEX.

import { join } from "node:path";
import type { JobPlan, JobStage } from "./job_plan.ts";
import { shellQuote } from "./slurm_emit.ts";

export interface K8sOptions {
  image: string;
  /** The PersistentVolumeClaim holding the data and the run folder. */
  claim: string;
  /** Where it is mounted in the pods (--data and --out must lie under it). */
  mount: string;
  /** The repository inside the image (the pods run `deno task` there). */
  workdir: string;
}

/** The container's command: the stage's argv, whose index op or distill reads from
 * JOB_COMPLETION_INDEX, or through sh with the offset of a stage that starts later. */
export function k8sCommand(st: JobStage): string[] {
  const first = st.firstIndex ?? 0;
  if (!first || !st.indexFlag) return st.argv;
  const argv = st.argv.map(shellQuote).join(" ");
  return ["sh", "-c", `exec ${argv} ${st.indexFlag} "$((JOB_COMPLETION_INDEX + ${first}))"`];
}

export function k8sJob(plan: JobPlan, st: JobStage, o: K8sOptions): Record<string, unknown> {
  const n = st.tasks ?? 1;
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: `${plan.name}-${st.name}`, labels: { app: plan.name, stage: st.name } },
    spec: {
      ...(st.tasks !== null ? { completionMode: "Indexed" } : {}),
      completions: n,
      parallelism: n,
      // A pod killed mid-training is started again and resumes from its last checkpoint.
      backoffLimit: 3 * n,
      template: {
        metadata: { labels: { app: plan.name, stage: st.name } },
        spec: {
          restartPolicy: "Never",
          containers: [{
            name: st.name,
            image: o.image,
            workingDir: o.workdir,
            command: k8sCommand(st),
            env: [
              // Vulkan needs the graphics capability; the device plugin sets
              // NVIDIA_VISIBLE_DEVICES to the pod's one GPU.
              { name: "NVIDIA_DRIVER_CAPABILITIES", value: "compute,utility,graphics" },
              { name: "CD_GPU_JOB", value: "1" },
            ],
            resources: { limits: { "nvidia.com/gpu": 1 } },
            volumeMounts: [{ name: "shared", mountPath: o.mount }],
          }],
          volumes: [{ name: "shared", persistentVolumeClaim: { claimName: o.claim } }],
        },
      },
    },
  };
}

/** Write DIR/<stage>-job.json and DIR/submit-k8s.sh; returns the submit line. */
export function writeK8s(plan: JobPlan, dir: string, o: K8sOptions): string {
  Deno.mkdirSync(dir, { recursive: true });
  const steps: string[] = [];
  for (const st of plan.stages) {
    const file = join(dir, `${st.name}-job.json`);
    Deno.writeTextFileSync(file, JSON.stringify(k8sJob(plan, st, o), null, 2) + "\n");
    steps.push(`kubectl apply -f ${shellQuote(file)}`);
    if (st !== plan.stages.at(-1)) {
      steps.push(
        `kubectl wait --for=condition=complete --timeout=-1s job/${plan.name}-${st.name}`,
      );
    }
  }
  const line = steps.join(" && ");
  Deno.writeTextFileSync(join(dir, "submit-k8s.sh"), `#!/bin/bash\nset -euo pipefail\n${line}\n`, {
    mode: 0o755,
  });
  return line;
}
