// Per-image confusion counts (zero fill + one counting dispatch) for 1- and 2-channel change
// maps. Each sample records BATCH evaluations then waits once (sync).
// Set BENCH_LARGE=1 for the paper's batch (8 × 512²).

import { initDevice } from "../engine/device.ts";
import { confusion } from "../engine/ops/confusion.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { tensor } from "../engine/tensor.ts";

await initDevice();

const BATCH = 20;
const LARGE = !!Deno.env.get("BENCH_LARGE");
const [B, S] = LARGE ? [8, 512] : [2, 128];

const labels = tensor(
  Uint32Array.from({ length: B * S * S }, (_, i) => (i % 97 === 0 ? 255 : i % 7 === 0 ? 1 : 0)),
  [B, S, S],
  "u32",
);

for (const c of [1, 2]) {
  const shape = [B, c, S, S];
  const n = B * c * S * S;
  const logits = tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 3), shape);
  Deno.bench({
    name: `confusion [${shape}] ×${BATCH}`,
    group: "confusion",
    baseline: c === 1,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) scope(() => void confusion(logits, labels));
      await sync();
      b.end();
    },
  });
}
