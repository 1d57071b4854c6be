// Softmax kernels: rows (one workgroup per row) and the channel axis of NCHW (strided, one thread
// per pixel), forward and backward. Each sample records BATCH dispatches then waits once (sync).
// Set BENCH_LARGE=1 for GPU-machine sizes.

import { initDevice } from "../engine/device.ts";
import { run } from "../engine/launch.ts";
import { sync } from "../engine/recorder.ts";
import { empty, tensor } from "../engine/tensor.ts";
import { prod } from "../kernels/common.ts";
import { softmaxBackwardKernel, softmaxKernel, type SoftmaxSpec } from "../kernels/softmax.ts";

await initDevice();

const BATCH = 20;
const LARGE = !!Deno.env.get("BENCH_LARGE");
// [outer, n, inner]: attention-like rows, and the 2-channel logits of a batch of change maps.
const SPECS: [string, SoftmaxSpec][] = LARGE
  ? [["rows", { outer: 16384, n: 1024, inner: 1 }], [
    "channels",
    { outer: 8, n: 2, inner: 512 * 512 },
  ]]
  : [["rows", { outer: 256, n: 1024, inner: 1 }], ["channels", {
    outer: 2,
    n: 2,
    inner: 128 * 128,
  }]];

for (const [what, spec] of SPECS) {
  const n = prod([spec.outer, spec.n, spec.inner]);
  const x = tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 3), [n]);
  const g = tensor(Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.11)), [n]);
  const y = empty([n]), dx = empty([n]);
  const label = `${what} [${spec.outer}, ${spec.n}, ${spec.inner}]`;
  const fwd = softmaxKernel(spec), bwd = softmaxBackwardKernel(spec);
  Deno.bench({
    name: `softmax ${label} ×${BATCH}`,
    group: what,
    baseline: true,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) run(fwd, [x], [y]);
      await sync();
      b.end();
    },
  });
  Deno.bench({
    name: `softmax backward ${label} ×${BATCH}`,
    group: what,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) run(bwd, [y, g], [dx]);
      await sync();
      b.end();
    },
  });
}
