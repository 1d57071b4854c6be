// Batch norm (training: two-stage statistics, running-stat update, normalise; and its backward)
// and max pooling, forward and forward + backward. Each sample records BATCH steps then waits
// once (sync); outputs are dropped inside the scope (a returned tensor would outlive it). For scale, the generic reduce of reduce.ts over the same B·H·W per channel (one
// workgroup per channel) and an elementwise x·2 (a bandwidth yardstick) run beside them. Set BENCH_LARGE=1 for GPU sizes.

import { backward, noGrad } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { layerNorm } from "../engine/ops/layer_norm.ts";
import { batchNorm2d, instanceNorm2d } from "../engine/ops/norm.ts";
import { mulScalar } from "../engine/ops/elementwise.ts";
import { maxPool2d } from "../engine/ops/pool.ts";
import { sum } from "../engine/ops/reduce.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { full, parameter, tensor } from "../engine/tensor.ts";

await initDevice();

const LARGE = !!Deno.env.get("BENCH_LARGE");
// Enough steps per sample that the fixed cost of one sync (milliseconds in Deno) is small.
const BATCH = LARGE ? 50 : 5;
const SHAPES = LARGE ? [[8, 16, 512, 512], [8, 64, 128, 128]] : [[2, 16, 64, 64]];

for (const shape of SHAPES) {
  const [b, c, h, w] = shape;
  const n = b * c * h * w;
  const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 2 + 0.5);
  const x = parameter(data, shape);
  const seed = tensor(Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.11)), shape)
    .keep();
  const weight = parameter(new Float32Array(c).fill(1.2), [c]);
  const bias = parameter(new Float32Array(c).fill(0.1), [c]);
  const runningMean = full([c], 0).keep(), runningVar = full([c], 1).keep();
  const bn = () => batchNorm2d(x, { weight, bias, runningMean, runningVar, training: true });
  const label = `[${shape}]`;
  const group = `norm ${label}`;

  Deno.bench({
    name: `batchNorm2d training forward ${label} ×${BATCH}`,
    group,
    baseline: true,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => void noGrad(bn));
      await sync();
      t.end();
    },
  });
  Deno.bench({
    name: `batchNorm2d training forward + backward (x, weight, bias) ${label} ×${BATCH}`,
    group,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => backward(bn(), seed));
      await sync();
      t.end();
    },
  });
  Deno.bench({
    name: `bandwidth reference: elementwise x·2 ${label} ×${BATCH}`,
    group,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => void noGrad(() => mulScalar(x, 2)));
      await sync();
      t.end();
    },
  });
  Deno.bench({
    name: `generic reduce.ts sum over B,H,W per channel ${label} ×${BATCH}`,
    group,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => void noGrad(() => sum(x, [0, 2, 3])));
      await sync();
      t.end();
    },
  });

  const pooled = [b, c, h / 2, w / 2];
  const poolSeed = tensor(new Float32Array(n / 4).fill(1), pooled).keep();
  Deno.bench({
    name: `maxPool2d 2×2 forward (inference) ${label} ×${BATCH}`,
    group: `pool ${label}`,
    baseline: true,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => void noGrad(() => maxPool2d(x, { kernel: 2 })));
      await sync();
      t.end();
    },
  });
  Deno.bench({
    name: `maxPool2d 2×2 forward + backward ${label} ×${BATCH}`,
    group: `pool ${label}`,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) {
        scope(() => backward(maxPool2d(x, { kernel: 2 }), poolSeed));
      }
      await sync();
      t.end();
    },
  });
  Deno.bench({
    name: `maxPool2d 3×3 s2 p1 forward + backward ${label} ×${BATCH}`,
    group: `pool ${label}`,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) {
        scope(() => {
          const y = maxPool2d(x, { kernel: 3, stride: 2, padding: 1 });
          backward(y, poolSeed);
        });
      }
      await sync();
      t.end();
    },
  });
}

// Instance norm (TinyCD's mixing blocks) and layer norm over tokens (transformer blocks).
{
  const [b, c, s] = LARGE ? [8, 32, 128] : [2, 8, 32];
  const shape = [b, c, s, s];
  const n = b * c * s * s;
  const x = parameter(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)), shape);
  const seed = tensor(Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.11)), shape)
    .keep();
  const tokens = [b, s * s, c];
  const xt = parameter(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.21)), tokens);
  const seedT = tensor(Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.13)), tokens)
    .keep();
  const weight = parameter(new Float32Array(c).fill(1.1), [c]);
  const bias = parameter(new Float32Array(c).fill(0.1), [c]);
  Deno.bench({
    name: `instanceNorm2d forward + backward (x) [${shape}] ×${BATCH}`,
    group: "instance and layer norm",
    baseline: true,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => backward(instanceNorm2d(x), seed));
      await sync();
      t.end();
    },
  });
  Deno.bench({
    name: `layerNorm over C forward + backward (x, weight, bias) [${tokens}] ×${BATCH}`,
    group: "instance and layer norm",
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => backward(layerNorm(xt, { weight, bias }), seedT));
      await sync();
      t.end();
    },
  });
}
