// Size-class buffer pool: released buffers are kept and handed out again for requests of the
// same class (or, none free there, of a slightly larger one), so a training step allocates
// nothing once the pool is warm. Reuse is safe without waiting because every use is recorded in
// queue order (see recorder.ts: uploads flush first). A request takes the free buffer created
// first, not the last released: then the same sequence of requests and releases (a training
// step, again) gets the same buffers each time, and the recorder's cached bind groups hit. With
// last-released-first, the buffers rotated from step to step and a TinyCD step created ~1450
// bind groups for 1630 dispatches.

import { device, setMemoryReport } from "./device.ts";
import { clearBindGroups } from "./recorder.ts";

/** A request that finds no free buffer of its class takes one of a larger class up to this
 * factor before creating one. Exact classes alone held 1.28–1.82× a training step's live peak
 * at 8 × 512² (free buffers waiting for their own class while others are created); at 1.5 the
 * pool holds FC-Siam-Diff's step in 6.30 GB (was 6.90; 4.44 live), TinyCD's in 15.72 (17.10;
 * 13.34), SNUNet-c16's in 10.81 (13.65; 8.11), FC-EF's in 4.80 (5.47; 3.01). At 2 SNUNet's rose
 * again (11.21: small requests hold large buffers that their own class then lacks), and finer
 * classes changed the figures by under 1 % (bench/peak_breakdown.ts --dry prints both). */
const OVERSIZE = 1.5;
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Round up to a size class: powers of two below 4 KiB, then 8 classes per octave (≤ 12.5 %
 * waste). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 4) * 4);
  if (b <= 4096) return 2 ** Math.ceil(Math.log2(b));
  const octave = 2 ** Math.floor(Math.log2(b));
  const step = octave / 8;
  return Math.ceil(b / step) * step;
}

/** Creation order of pooled buffers. */
const serial = new WeakMap<GPUBuffer, number>();
let nextSerial = 0;

class BufferPool {
  /** Free buffers per size class, latest created first (pop() gives the earliest). */
  #free = new Map<number, GPUBuffer[]>();
  /** Buffers handed out and not yet released. */
  live = 0;
  /** Bytes held by the pool (live and free). */
  heldBytes = 0;
  peakBytes = 0;
  /** Live bytes count each request's own class, whichever buffer served it: the demand of
   * the tensors, independent of what the pool had free; heldBytes is the supply. */
  #liveBytes = 0;
  #lent = new Map<GPUBuffer, number>();
  peakLiveBytes = 0;
  /** Largest single request so far (train/window_plan.ts reads it around a dry forward). */
  largestRequest = 0;
  /** Requests served by a free buffer of a larger class. */
  oversized = 0;

  acquire(bytes: number, label = "tensor"): GPUBuffer {
    this.largestRequest = Math.max(this.largestRequest, bytes);
    const size = sizeClass(bytes);
    const list = this.#free.get(size);
    let buf = list?.pop() ?? this.#larger(size);
    if (!buf) {
      buf = device().createBuffer({ size, usage: USAGE, label });
      serial.set(buf, nextSerial++);
      this.heldBytes += size;
      this.peakBytes = Math.max(this.peakBytes, this.heldBytes);
    }
    this.live++;
    this.#lent.set(buf, size);
    this.#liveBytes += size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.#liveBytes);
    return buf;
  }

  /** On a miss: the earliest-created free buffer of the smallest larger class within
   * OVERSIZE × size. */
  #larger(size: number): GPUBuffer | undefined {
    let best = 0;
    for (const [c, l] of this.#free) {
      if (c > size && c <= size * OVERSIZE && l.length && (!best || c < best)) best = c;
    }
    if (!best) return undefined;
    this.oversized++;
    return this.#free.get(best)!.pop();
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    // Insert keeping the order: binary search for the first entry created before buf.
    const id = serial.get(buf)!;
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (serial.get(list[mid])! > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, buf);
    this.live--;
    this.#liveBytes -= this.#lent.get(buf) ?? size;
    this.#lent.delete(buf);
  }

  /** Start both peaks (live, held) from now, e.g. for the next model of a benchmark. */
  resetPeaks(): void {
    this.peakLiveBytes = this.#liveBytes;
    this.peakBytes = this.heldBytes;
  }

  /** Fill every free buffer with a value (tests: a kernel that reads memory it never wrote
   * shows up as that value instead of passing by luck on zeroed fresh buffers). */
  poisonFree(value = NaN): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        device().queue.writeBuffer(b, 0, new Float32Array(b.size / 4).fill(value));
      }
    }
  }

  /** Destroy every free buffer (e.g. between benchmarks of different sizes). */
  trim(): void {
    clearBindGroups();
    for (const list of this.#free.values()) {
      for (const b of list) {
        this.heldBytes -= b.size;
        b.destroy();
      }
    }
    this.#free.clear();
  }

  get liveBytes(): number {
    return this.#liveBytes;
  }
}

export const pool = new BufferPool();
setMemoryReport(() =>
  `this process's buffer pool held ${(pool.heldBytes / 1e9).toFixed(2)} GB, ` +
  `${(pool.liveBytes / 1e9).toFixed(2)} GB of it in use`
);
