// Compute pipelines cached by their WGSL text: a kernel generator bakes shapes in as constants,
// so the same layer shape reuses one compiled pipeline for the whole run.

import { device } from "./device.ts";
import { workgroupBytes } from "../kernels/common.ts";

const cache = new Map<string, GPUComputePipeline>();

export function pipeline(code: string, label: string): GPUComputePipeline {
  let p = cache.get(code);
  if (!p) {
    const dev = device();
    // wgpu does not check this, and past the limit a launch may run (software adapter) or hang
    // the device (seen on an H200 at 57 KiB): refuse it here, naming the kernel.
    const bytes = workgroupBytes(code), limit = dev.limits.maxComputeWorkgroupStorageSize;
    if (bytes > limit) {
      throw new Error(
        `kernel ${label} declares ${bytes} bytes of workgroup memory; this adapter allows ${limit}`,
      );
    }
    const module = dev.createShaderModule({ code, label });
    p = dev.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label,
    });
    cache.set(code, p);
  }
  return p;
}

export function pipelineCount(): number {
  return cache.size;
}
