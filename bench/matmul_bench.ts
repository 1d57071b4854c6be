// Matmul through the op (its own tile plan). Each sample records BATCH products into one pass and
// then waits for the GPU once (sync), so the time is GPU work plus recording over BATCH products.
// Sizes suit the software adapter; set BENCH_LARGE=1 for GPU-machine sizes. For TFLOP/s tables
// and the PyTorch comparison use bench/gpu_matmul.ts and bench/reference/matmul.py.

import { initDevice } from "../engine/device.ts";
import { gemm, type GemmOptions } from "../engine/ops/matmul.ts";
import { sync } from "../engine/recorder.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";

await initDevice();

const LARGE = !!Deno.env.get("BENCH_LARGE");
const BATCH = LARGE ? 20 : 2;

function randomTensor(shape: number[]): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
  return tensor(a, shape).keep();
}

function benchGemm(name: string, aShape: number[], bShape: number[], o: GemmOptions = {}): void {
  const a = randomTensor(aShape), b = randomTensor(bShape);
  Deno.bench({
    name: `${name} ×${BATCH}`,
    group: "matmul",
    n: LARGE ? undefined : 3,
    warmup: LARGE ? undefined : 1,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) gemm(a, b, o).dispose();
      await sync();
      t.end();
    },
  });
}

const S = LARGE ? [1024, 4096] : [96, 255];
for (const n of S) {
  benchGemm(`${n}³ NN`, [n, n], [n, n]);
  benchGemm(`${n}³ NT`, [n, n], [n, n], { transB: true });
}
// 1×1 convolution: W[Co, Ci] × X[B, Ci, H·W] (2-D a broadcast over the batch of b)
const [B, Ci, Co, HW] = LARGE ? [8, 64, 64, 128 * 128] : [2, 16, 16, 32 * 32];
benchGemm(`conv1x1 ${Co}x${Ci} × [${B},${Ci},${HW}]`, [Co, Ci], [B, Ci, HW]);
// its weight gradient: Σ_b dY[b]·X[b]ᵀ (batch folded into the reduction, split-K)
benchGemm(`conv1x1 dW Σ_b [${B},${Co},${HW}]·ᵀ`, [B, Co, HW], [B, Ci, HW], {
  transB: true,
  batchShape: [],
});
// linear layer on a batch of rows with bias + relu in the epilogue
benchGemm(`linear [${B},${HW / 16},${Ci}]×[${Ci},${Co}]`, [B, HW / 16, Ci], [Ci, Co], {
  activation: "relu",
});
