// Elementwise kernels. Each sample records BATCH dispatches into one pass and then waits for the
// GPU once (sync), so the time is GPU work plus recording, divided over BATCH dispatches — never
// the cost of a lone submit-and-wait. Set BENCH_LARGE=1 for GPU-machine sizes.

import { initDevice } from "../engine/device.ts";
import { run } from "../engine/launch.ts";
import { sync } from "../engine/recorder.ts";
import { empty, type Tensor, tensor } from "../engine/tensor.ts";
import type { Kernel } from "../kernels/common.ts";
import { fillKernel, mapKernel } from "../kernels/elementwise.ts";

await initDevice();

const LARGE = !!Deno.env.get("BENCH_LARGE");
// Enough dispatches per sample that the fixed cost of one sync (milliseconds in Deno) is small.
const BATCH = LARGE ? 200 : 20;
const SIZES = LARGE ? [1 << 20, 1 << 24] : [1 << 18];

function randomTensor(shape: number[]): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
  return tensor(a, shape);
}

/** One bench: BATCH dispatches of `k` per sample. */
function benchKernel(name: string, k: Kernel, inputs: Tensor[], outputs: Tensor[]): void {
  Deno.bench({
    name: `${name} ×${BATCH}`,
    group: name.split(" ")[0],
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) run(k, inputs, outputs);
      await sync();
      b.end();
    },
  });
}

for (const n of SIZES) {
  const a = randomTensor([n]);
  const b = randomTensor([n]);
  const out = empty([n]);
  const flat = [{ shape: [n] }, { shape: [n] }];
  benchKernel(
    `add ${n}`,
    mapKernel({ name: "add", expr: "a + b", inputs: flat, outShape: [n] }),
    [a, b],
    [out],
  );
  benchKernel(
    `sigmoid ${n}`,
    mapKernel({
      name: "sigmoid",
      expr: "1.0 / (1.0 + exp(-a))",
      inputs: [{ shape: [n] }],
      outShape: [n],
    }),
    [a],
    [out],
  );
  // Broadcasting a row vector over rows: the index arithmetic path.
  const cols = 1024;
  const row = randomTensor([cols]);
  const shape = [n / cols, cols];
  benchKernel(
    `mul_bcast ${n}`,
    mapKernel({
      name: "mul_bcast",
      expr: "a * b",
      inputs: [{ shape }, { shape: [cols] }],
      outShape: shape,
    }),
    [a, row],
    [out],
  );
  benchKernel(`fill ${n}`, fillKernel(n, 0), [], [out]);
}

// The fixed cost every sample above pays once: submitting and waiting for an empty queue.
Deno.bench({
  name: "sync only (fixed cost per sample)",
  group: "sync",
  async fn(b) {
    b.start();
    await sync();
    b.end();
  },
});
