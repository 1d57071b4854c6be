// Per-kernel GPU time: while profiling, the recorder gives every dispatch its own compute pass
// with begin/end timestamps, so a training step can be broken down by op label (bench only: a
// pass per dispatch costs far more than the kernels themselves on small shapes). Also the
// readback of a timestamp query set, which gpu_clock.ts (the benches' two-mark clock) shares;
// it lives here because the recorder imports this file and gpu_clock.ts imports the recorder.

import { device } from "./device.ts";

/** Buffers that resolve the first `count` timestamps of a query set and read them back. */
export class TimestampReadback {
  readonly #count: number;
  readonly #resolved: GPUBuffer;
  readonly #staging: GPUBuffer;

  constructor(count: number) {
    this.#count = count;
    this.#resolved = device().createBuffer({
      size: count * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.#staging = device().createBuffer({
      size: count * 8,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  /** Record the resolve of `set` and the copy into the mappable buffer. */
  record(e: GPUCommandEncoder, set: GPUQuerySet): void {
    e.resolveQuerySet(set, 0, this.#count, this.#resolved, 0);
    e.copyBufferToBuffer(this.#resolved, 0, this.#staging, 0, this.#count * 8);
  }

  /** The timestamps (ns), once the recorded copy was submitted. */
  async read(): Promise<BigUint64Array> {
    await this.#staging.mapAsync(GPUMapMode.READ);
    const ts = new BigUint64Array(this.#staging.getMappedRange().slice(0));
    this.#staging.unmap();
    return ts;
  }

  destroy(): void {
    this.#resolved.destroy();
    this.#staging.destroy();
  }
}

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
    const readback = new TimestampReadback(c.labels.length * 2);
    const enc = dev.createCommandEncoder();
    readback.record(enc, c.set);
    dev.queue.submit([enc.finish()]);
    const ts = await readback.read();
    c.labels.forEach((label, k) => {
      const ms = Number(ts[2 * k + 1] - ts[2 * k]) / 1e6;
      const t = totals.get(label) ?? { label, calls: 0, ms: 0 };
      t.calls++;
      t.ms += ms;
      totals.set(label, t);
    });
    readback.destroy();
    c.set.destroy();
  }
  return [...totals.values()].sort((a, b) => b.ms - a.ms);
}
