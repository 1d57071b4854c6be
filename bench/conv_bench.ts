// Convolution through the ops (their own kernel choice): forward with a fused epilogue, and a
// training step's forward + backward. Each sample records BATCH launches and then waits for the
// GPU once (sync), so the time is GPU work plus recording. Shapes suit the software adapter;
// set BENCH_LARGE=1 for GPU-machine sizes. For per-layer tables against cuDNN use
// bench/gpu_conv.ts with bench/reference/conv.py.

import { backward } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { conv2d, type Conv2dOptions } from "../engine/ops/conv2d.ts";
import { convTranspose2d } from "../engine/ops/conv_transpose2d.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { parameter, type Tensor, tensor } from "../engine/tensor.ts";

await initDevice();

const LARGE = !!Deno.env.get("BENCH_LARGE");
const BATCH = LARGE ? 20 : 2;
const [B, PX] = LARGE ? [8, 128] : [1, 32];

function data(shape: number[]): Float32Array {
  const n = shape.reduce((p, d) => p * d, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
  return a;
}

const input = (shape: number[]) => tensor(data(shape), shape).keep();
const param = (shape: number[]) => parameter(data(shape), shape);

type Opts = Omit<Conv2dOptions, "bias" | "preluSlope"> & { outputPadding?: number };

function benchConv(
  name: string,
  ci: number,
  co: number,
  k: number,
  opts: Opts = {},
  transposed = false,
): void {
  const { outputPadding, ...convOpts } = opts;
  const groups = opts.groups ?? 1;
  const x = input([B, ci, PX, PX]);
  const w = param(transposed ? [ci, co, k, k] : [co, ci / groups, k, k]);
  const bias = param([co]);
  const slope = opts.activation === "prelu" ? param([1]) : undefined;
  const op = (xs: Tensor) =>
    transposed
      ? convTranspose2d(xs, w, { ...convOpts, outputPadding, bias, preluSlope: slope })
      : conv2d(xs, w, { ...convOpts, bias, preluSlope: slope });
  const common = { group: name, n: LARGE ? undefined : 3, warmup: LARGE ? undefined : 1 };
  Deno.bench({
    ...common,
    name: `${name} forward ×${BATCH}`,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) scope(() => void op(x));
      await sync();
      t.end();
    },
  });
  Deno.bench({
    ...common,
    name: `${name} forward + backward ×${BATCH}`,
    async fn(t) {
      t.start();
      for (let i = 0; i < BATCH; i++) {
        scope(() => {
          const y = op(x);
          backward(y, y);
        });
      }
      await sync();
      t.end();
    },
  });
}

benchConv("3×3 16→16 bias relu", 16, 16, 3, { padding: 1, activation: "relu" });
benchConv("3×3 32→64 s2 bias silu", 32, 64, 3, { padding: 1, stride: 2, activation: "silu" });
benchConv("depthwise 3×3 64 silu", 64, 64, 3, { padding: 1, groups: 64, activation: "silu" });
benchConv("mixing 64→32 g32 prelu", 64, 32, 3, { padding: 1, groups: 32, activation: "prelu" });
benchConv("1×1 32→64 (matmul op)", 32, 64, 1);
benchConv("1×1 32→64 silu (implicit GEMM)", 32, 64, 1, { activation: "silu" });
benchConv("convT 3×3 s2 32→32", 32, 32, 3, { stride: 2, padding: 1, outputPadding: 1 }, true);
