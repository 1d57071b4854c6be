// Reductions along the shapes the engine meets: rows (softmax, losses), columns (bias
// gradients), a short trailing axis and a whole tensor (scalar losses). Each sample records
// BATCH dispatches then waits once (sync). Set BENCH_LARGE=1 for GPU-machine sizes.

import { initDevice } from "../engine/device.ts";
import { run } from "../engine/launch.ts";
import { sync } from "../engine/recorder.ts";
import { empty, type Tensor, tensor } from "../engine/tensor.ts";
import { reduceKernel, type ReduceSpec } from "../kernels/reduce.ts";

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

function benchReduce(name: string, spec: ReduceSpec): void {
  const x = randomTensor([...spec.shape]);
  const outputs = spec.shape.filter((_, k) => !spec.axes.includes(k)).reduce((p, d) => p * d, 1);
  const out = empty([outputs]);
  const k = reduceKernel(spec);
  Deno.bench({
    name: `${name} [${spec.shape}] axes ${spec.axes} ×${BATCH}`,
    group: name,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) run(k, [x], [out]);
      await sync();
      b.end();
    },
  });
}

for (const n of SIZES) {
  benchReduce("sum_rows", { shape: [n / 1024, 1024], axes: [1], op: "sum" });
  benchReduce("sum_cols", { shape: [n / 1024, 1024], axes: [0], op: "sum" });
  benchReduce("sum_short", { shape: [n / 4, 4], axes: [1], op: "sum" });
  benchReduce("max_rows", { shape: [n / 1024, 1024], axes: [1], op: "max" });
  benchReduce("sum_all", { shape: [n, 1], axes: [0, 1], op: "sum", scale: 1 / n });
}
