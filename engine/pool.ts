// Size-class buffer pool: released buffers are kept and handed out again for requests of the
// same class, so a training step allocates nothing once the pool is warm. Reuse is safe without
// waiting because every use is recorded in queue order (see recorder.ts: uploads flush first).

import { device } from "./device.ts";
import { clearBindGroups } from "./recorder.ts";

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

class BufferPool {
  #free = new Map<number, GPUBuffer[]>();
  /** Buffers handed out and not yet released. */
  live = 0;
  /** Bytes held by the pool (live and free). */
  heldBytes = 0;
  peakBytes = 0;
  #liveBytes = 0;
  peakLiveBytes = 0;

  acquire(bytes: number, label = "tensor"): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.#free.get(size);
    let buf = list?.pop();
    if (!buf) {
      buf = device().createBuffer({ size, usage: USAGE, label });
      this.heldBytes += size;
      this.peakBytes = Math.max(this.peakBytes, this.heldBytes);
    }
    this.live++;
    this.#liveBytes += size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.#liveBytes);
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    let list = this.#free.get(size);
    if (!list) this.#free.set(size, list = []);
    list.push(buf);
    this.live--;
    this.#liveBytes -= size;
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
