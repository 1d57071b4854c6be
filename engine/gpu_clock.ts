// The benchmarks' GPU clock (bench/gpu_conv.ts, bench/gpu_method_kernels.ts): two timestamps
// written by empty compute passes recorded around the steps being timed, so the time is the
// GPU's alone (no submit or readback latency). Needs the timestamp-query feature.

import { device } from "./device.ts";
import { TimestampReadback } from "./kernel_profile.ts";
import { sync, withEncoder } from "./recorder.ts";

/** Mark 0 before the steps, mark 1 after them, then read the time between. */
export class GpuClock {
  #set = device().createQuerySet({ type: "timestamp", count: 2 });
  #readback = new TimestampReadback(2);

  /** An empty pass that writes timestamp `index` (0 or 1) as it begins. */
  mark(index: number): void {
    withEncoder((e) =>
      e.beginComputePass({
        timestampWrites: { querySet: this.#set, beginningOfPassWriteIndex: index },
      }).end()
    );
  }

  /** Record the readback of both marks (then sync() before elapsedNs()). */
  resolve(): void {
    withEncoder((e) => this.#readback.record(e, this.#set));
  }

  /** Nanoseconds between the marks, after resolve() and sync(). */
  async elapsedNs(): Promise<number> {
    const [t0, t1] = await this.#readback.read();
    return Number(t1 - t0);
  }

  /** Milliseconds between the marks: resolve, sync, read. */
  async elapsedMs(): Promise<number> {
    this.resolve();
    await sync();
    return (await this.elapsedNs()) / 1e6;
  }
}
