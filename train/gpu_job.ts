// A job on a cluster must train on the GPU it was given. Deno's WebGPU cannot choose among
// identical GPUs (requestAdapter takes only a power preference, and NVIDIA's Vulkan driver
// ignores CUDA_VISIBLE_DEVICES), so a job sees one GPU only when its scope shows it one (Slurm
// with ConstrainDevices=yes, a container with NVIDIA_VISIBLE_DEVICES); on a node where the
// scope shows none, Vulkan falls back to the CPU driver and the job would train for days
// without a word. So a job names its adapter and refuses a software one unless told otherwise.

import { deviceInfo, initDevice, isSoftwareAdapter } from "../engine/device.ts";

/** Environment variables that make a process a GPU job: any Slurm job, and CD_GPU_JOB=1, which
 * the emitted Kubernetes Jobs set (KUBERNETES_SERVICE_HOST is not used: CI runners are pods). */
export const JOB_ENV = ["SLURM_JOB_ID", "CD_GPU_JOB"];

/** True for a per-member unit or a process a scheduler started (Slurm, the emitted Jobs). */
export function isGpuJob(
  unit: boolean,
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
): boolean {
  return unit || JOB_ENV.some((k) => (env(k) ?? "") !== "");
}

/** What made this process a GPU job without an index, for messages. */
export function jobKind(env: (k: string) => string | undefined = (k) => Deno.env.get(k)): string {
  return env("SLURM_JOB_ID") ? "this is a Slurm job" : "this is a GPU job (CD_GPU_JOB=1)";
}

/**
 * Start the device and stop when it is a software driver and `allowSoftware` is off. `why`
 * names what made this a GPU job (for the message). The commands name the adapter (vendor,
 * device, driver) on stderr as the device starts (cli/run.ts), so every job's log shows it.
 */
export async function checkJobAdapter(o: { allowSoftware: boolean; why: string }): Promise<void> {
  await initDevice();
  if (!isSoftwareAdapter() || o.allowSoftware) return;
  throw new Error(
    `${o.why}, but the adapter is a software driver on the CPU (${deviceInfo().description}): ` +
      "this job sees no GPU. Deno's WebGPU cannot pick among GPUs, so the job must run in a " +
      "scope that shows it exactly one: Slurm with ConstrainDevices=yes in cgroup.conf and " +
      "--gres=gpu:1, or a container with NVIDIA_VISIBLE_DEVICES set and " +
      "NVIDIA_DRIVER_CAPABILITIES including graphics (Vulkan); `vulkaninfo --summary` on the " +
      "node lists what the job can see. Pass --allow-software-adapter to train on the CPU anyway.",
  );
}
