// Per-kernel GPU time: while profiling, the recorder gives every dispatch its own compute pass
// with begin/end timestamps, so a training step can be broken down by op label (bench only: a
// pass per dispatch costs far more than the kernels themselves on small shapes).

import { device } from "./device.ts";

const SET_SIZE = 4096; // WebGPU's maximum queries per set

interface Chunk {
  set: GPUQuerySet;
  labels: string[];
}

let chunks: Chunk[] | null = null;

export function profiling(): boolean {
  return chunks !== null;
}

/** Timestamp writes for the next dispatch's pass, or undefined when not profiling. */
export function nextTimestampWrites(label: string): GPUComputePassTimestampWrites | undefined {
  if (!chunks) return undefined;
  let c = chunks[chunks.length - 1];
  if (!c || c.labels.length * 2 >= SET_SIZE) {
    c = { set: device().createQuerySet({ type: "timestamp", count: SET_SIZE }), labels: [] };
    chunks.push(c);
  }
  const i = c.labels.length * 2;
  c.labels.push(label);
  return { querySet: c.set, beginningOfPassWriteIndex: i, endOfPassWriteIndex: i + 1 };
}

export function startProfile(): void {
  chunks = [];
}

export interface KernelTime {
  label: string;
  calls: number;
  ms: number;
}

/** Stop profiling and return GPU ms per label, largest first. Call after everything profiled
 * was flushed (the queries are resolved in a fresh submission). */
export async function stopProfile(): Promise<KernelTime[]> {
  const list = chunks ?? [];
  chunks = null;
  const dev = device();
  const totals = new Map<string, KernelTime>();
  for (const c of list) {
    const n = c.labels.length * 2;
    const resolve = dev.createBuffer({
      size: n * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = dev.createBuffer({
      size: n * 8,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = dev.createCommandEncoder();
    enc.resolveQuerySet(c.set, 0, n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, n * 8);
    dev.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const ts = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    c.labels.forEach((label, k) => {
      const ms = Number(ts[2 * k + 1] - ts[2 * k]) / 1e6;
      const t = totals.get(label) ?? { label, calls: 0, ms: 0 };
      t.calls++;
      t.ms += ms;
      totals.set(label, t);
    });
    resolve.destroy();
    read.destroy();
    c.set.destroy();
  }
  return [...totals.values()].sort((a, b) => b.ms - a.ms);
}
