// Compute pipelines cached by their WGSL text: a kernel generator bakes shapes in as constants,
// so the same layer shape reuses one compiled pipeline for the whole run.

import { device } from "./device.ts";

const cache = new Map<string, GPUComputePipeline>();

export function pipeline(code: string, label: string): GPUComputePipeline {
  let p = cache.get(code);
  if (!p) {
    const dev = device();
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
