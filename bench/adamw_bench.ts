// The fused AdamW step (one dispatch over the whole parameter arena) and the one-dispatch
// gradient zeroing. Each sample records BATCH steps then waits once (sync). The parameter count
// is split over many odd-sized tensors, as a model's are. Set BENCH_LARGE=1 for GPU sizes.

import { ParamArena } from "../engine/arena.ts";
import { initDevice } from "../engine/device.ts";
import { AdamW } from "../engine/optim/adamw.ts";
import { sync } from "../engine/recorder.ts";
import { parameter, type Tensor } from "../engine/tensor.ts";

await initDevice();

const LARGE = !!Deno.env.get("BENCH_LARGE");
// Locally below the hyper-parameter ring size (16), so no step is forced to submit; on the GPU
// machine more steps per sample, so the fixed cost of one sync is small (a submit every 16
// steps, still fewer than a training loop makes).
const BATCH = LARGE ? 100 : 10;
const TOTALS = LARGE ? [1 << 20, 1 << 24] : [1 << 18];

/** About `total` parameters in tensors of 1000–9000 values (plus a few tiny bias-like ones). */
function modelLike(total: number): Tensor[] {
  const out: Tensor[] = [];
  let left = total;
  for (let k = 0; left > 0; k++) {
    const n = Math.min(left, k % 5 === 4 ? 7 : 1000 + ((k * 7919) % 8000));
    out.push(parameter(new Float32Array(n).fill(0.01 * (k % 13)), [n]));
    left -= n;
  }
  return out;
}

for (const total of TOTALS) {
  const opt = new AdamW(modelLike(total), { lr: 1e-3, weightDecay: 0.01 });
  const arena: ParamArena = opt.arena;
  const tensors = arena.slots.length;
  Deno.bench({
    name: `adamw step ${total} params in ${tensors} tensors ×${BATCH}`,
    group: `adamw ${total}`,
    baseline: true,
    async fn(b) {
      // Every parameter with a gradient, as after a backward that reached them all (the zeroing
      // benchmark clears the marks).
      for (const p of opt.params) p.hasGrad = true;
      b.start();
      for (let i = 0; i < BATCH; i++) opt.step(1e-3 * (1 + (i % 3)));
      await sync();
      b.end();
    },
  });
  Deno.bench({
    name: `zero grads ${total} params ×${BATCH}`,
    group: `adamw ${total}`,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) opt.zeroGrad();
      await sync();
      b.end();
    },
  });
}
