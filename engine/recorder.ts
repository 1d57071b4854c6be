// Records dispatches into one command encoder and one compute pass, submitted by flush() (called
// by readback, uploads into reused buffers, the caller, or every AUTO_FLUSH dispatches, so the
// GPU starts on a step's first kernels while the CPU is still recording the rest).

import { device, throwPendingErrors } from "./device.ts";
import { nextTimestampWrites, profiling } from "./kernel_profile.ts";
import { pipeline } from "./pipelines.ts";
import { isDryRun } from "./profiler.ts";

export interface Binding {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

let encoder: GPUCommandEncoder | null = null;
let pass: GPUComputePassEncoder | null = null;
let recorded = 0;
/** Dispatches recorded before an automatic submit. */
export const AUTO_FLUSH = 256;
/** Counters for tests and benchmarks. */
export const stats = { dispatches: 0, submits: 0, bindGroupsCreated: 0 };

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

// Bind groups cost tens of µs to create in Deno, and a training step binds the same pooled
// buffers to the same pipelines every step, so they are cached by (pipeline, buffers, ranges).
const ids = new WeakMap<object, number>();
let nextId = 0;
const idOf = (o: object) => {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, id = nextId++);
  return id;
};
const groups = new Map<string, GPUBindGroup>();
const MAX_GROUPS = 20_000;

function bindGroup(pipe: GPUComputePipeline, label: string, bindings: Binding[]): GPUBindGroup {
  let key = String(idOf(pipe));
  for (const b of bindings) key += `|${idOf(b.buffer)}:${b.offset}:${b.size}`;
  let group = groups.get(key);
  if (!group) {
    stats.bindGroupsCreated++;
    if (groups.size >= MAX_GROUPS) groups.clear();
    // WebGPU would only report this later as an invalid bind group, without the binding.
    const limit = device().limits.maxStorageBufferBindingSize;
    bindings.forEach((b, i) => {
      if (b.size > limit) {
        throw new Error(
          `${label}: binding ${i} ('${b.buffer.label}', ${b.size} bytes) exceeds this device's ` +
            `storage binding limit (${limit}): bind it in chunks (as ParamArena.chunks)`,
        );
      }
    });
    group = device().createBindGroup({
      label,
      layout: pipe.getBindGroupLayout(0),
      entries: bindings.map((b, i) => ({
        binding: i,
        resource: { buffer: b.buffer, offset: b.offset, size: b.size },
      })),
    });
    groups.set(key, group);
  }
  return group;
}

/** Forget cached bind groups (after buffers were destroyed). */
export function clearBindGroups(): void {
  groups.clear();
}

/** Sees every dispatch's label and bound ranges, dry runs included (bench/step_traffic.ts sums
 * a step's bytes per kernel without a GPU). */
export type DispatchTap = (
  label: string,
  bindings: Binding[],
  touched?: readonly (number | null)[],
) => void;
let tap: DispatchTap | null = null;

/** Install (or with null remove) the dispatch tap; returns the one it replaces. */
export function setDispatchTap(t: DispatchTap | null): DispatchTap | null {
  const prev = tap;
  tap = t;
  return prev;
}

/** Record one dispatch of a kernel. Bindings are @group(0) @binding(0..n-1) in order. */
export function dispatch(
  label: string,
  code: string,
  bindings: Binding[],
  workgroups: [number, number, number],
  detail?: string,
  touched?: readonly (number | null)[],
): void {
  tap?.(label, bindings, touched);
  if (isDryRun()) return; // a dry MAC count: shapes only
  const pipe = pipeline(code, label);
  const group = bindGroup(pipe, label, bindings);
  if (profiling()) {
    endPass();
    pass = encoder!.beginComputePass({
      timestampWrites: nextTimestampWrites(
        `${label} [${workgroups.join("x")}]${detail ? ` ${detail}` : ""}`,
      ),
    });
  }
  const p = ensurePass();
  p.setPipeline(pipe);
  p.setBindGroup(0, group);
  p.dispatchWorkgroups(workgroups[0], workgroups[1], workgroups[2]);
  if (profiling()) endPass();
  recorded++;
  stats.dispatches++;
  if (recorded >= AUTO_FLUSH) flush();
}

/** Record a buffer-to-buffer copy (ends the current compute pass). */
export function copy(src: Binding, dst: Binding, size: number): void {
  tap?.("copy", [{ ...src, size }, { ...dst, size }]);
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
