// The fused change-detection loss and its gradient (CE with ignored pixels and class weights,
// + λ·MSE to a teacher), forward + backward through the op, and the forward alone (no grad,
// as in validation). Each sample records BATCH steps then waits once (sync).
// Set BENCH_LARGE=1 for the paper's batch (8 × 512²).

import { backward, noGrad } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { cdLoss } from "../engine/ops/cd_loss.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { parameter, tensor } from "../engine/tensor.ts";

await initDevice();

const BATCH = 10;
const LARGE = !!Deno.env.get("BENCH_LARGE");
const [B, S] = LARGE ? [8, 512] : [2, 128];

const labels = tensor(
  Uint32Array.from({ length: B * S * S }, (_, i) => (i % 97 === 0 ? 255 : i % 7 === 0 ? 1 : 0)),
  [B, S, S],
  "u32",
).keep();

for (const c of [1, 2] as const) {
  const shape = [B, c, S, S];
  const n = B * c * S * S;
  const logits = parameter(
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 3),
    shape,
  );
  const teacher = tensor(Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.11)), shape)
    .keep();
  const opts = { lambda: 1e-3, teacher, classWeights: [1, 4] };
  const label = `[${shape}]`;
  Deno.bench({
    name: `cdLoss CE forward + backward ${label} ×${BATCH}`,
    group: `${c} channel`,
    baseline: true,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) scope(() => backward(cdLoss(logits, labels).loss));
      await sync();
      b.end();
    },
  });
  Deno.bench({
    name: `cdLoss CE + λ·MSE, class weights, forward + backward ${label} ×${BATCH}`,
    group: `${c} channel`,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) scope(() => backward(cdLoss(logits, labels, opts).loss));
      await sync();
      b.end();
    },
  });
  Deno.bench({
    name: `cdLoss CE + λ·MSE forward only ${label} ×${BATCH}`,
    group: `${c} channel`,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) noGrad(() => scope(() => void cdLoss(logits, labels, opts)));
      await sync();
      b.end();
    },
  });
}
