// Records every dispatch of a step into one command encoder and one compute pass; nothing is
// submitted until flush() (called by readback, uploads into reused buffers, or the caller).

import { device, throwPendingErrors } from "./device.ts";
import { pipeline } from "./pipelines.ts";

export interface Binding {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

let encoder: GPUCommandEncoder | null = null;
let pass: GPUComputePassEncoder | null = null;
let recorded = 0;
/** Counters for tests and benchmarks. */
export const stats = { dispatches: 0, submits: 0 };

function ensurePass(): GPUComputePassEncoder {
  encoder ??= device().createCommandEncoder();
  pass ??= encoder.beginComputePass();
  return pass;
}

function endPass(): GPUCommandEncoder {
  encoder ??= device().createCommandEncoder();
  if (pass) {
    pass.end();
    pass = null;
  }
  return encoder;
}

/** Record one dispatch of a kernel. Bindings are @group(0) @binding(0..n-1) in order. */
export function dispatch(
  label: string,
  code: string,
  bindings: Binding[],
  workgroups: [number, number, number],
): void {
  const pipe = pipeline(code, label);
  const group = device().createBindGroup({
    label,
    layout: pipe.getBindGroupLayout(0),
    entries: bindings.map((b, i) => ({
      binding: i,
      resource: { buffer: b.buffer, offset: b.offset, size: b.size },
    })),
  });
  const p = ensurePass();
  p.setPipeline(pipe);
  p.setBindGroup(0, group);
  p.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
  recorded++;
  stats.dispatches++;
}

/** Record a buffer-to-buffer copy (ends the current compute pass). */
export function copy(src: Binding, dst: Binding, size: number): void {
  endPass().copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, size);
  recorded++;
}

/** Access the encoder outside a compute pass (timestamp queries, resolves). */
export function withEncoder(fn: (e: GPUCommandEncoder) => void): void {
  fn(endPass());
  recorded++;
}

/** Submit everything recorded so far. Cheap when nothing is pending. */
export function flush(): void {
  if (!encoder) return;
  const enc = endPass();
  encoder = null;
  if (recorded === 0) return;
  recorded = 0;
  device().queue.submit([enc.finish()]);
  stats.submits++;
  throwPendingErrors();
}

export function pending(): number {
  return recorded;
}

/** Flush and wait until the GPU has finished all submitted work. */
export async function sync(): Promise<void> {
  flush();
  await device().queue.onSubmittedWorkDone();
  throwPendingErrors();
}
