// The tensor-core matmul (kernels/matmul_coop.ts) against a float64 product of the f16-rounded
// operands, on odd shapes that overhang every tile edge, both transposes, scalar and vec4 loads,
// batch and reduced dims, a split reduction, and the bias / activation epilogue. Only adapters
// with wgpu's cooperative-matrix feature run it (NVIDIA GPUs through Vulkan); the software
// adapter lacks it, so there the test says so and skips.

import assert from "node:assert/strict";
import { hasFeature, initDevice } from "../../engine/device.ts";
import { run } from "../../engine/launch.ts";
import { tensor } from "../../engine/tensor.ts";
import { type BatchDim, type MatmulActivation } from "../../kernels/matmul.ts";
import {
  COOP_FEATURE,
  COOP_TILE,
  type CoopTile,
  matmulCoopKernel,
} from "../../kernels/matmul_coop.ts";
import { randArray } from "../util.ts";

await initDevice();
const available = hasFeature(COOP_FEATURE);
if (!available) {
  console.log(`matmul_coop: skipped, this adapter lacks ${COOP_FEATURE} (tensor cores)`);
}

interface Case {
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  batch?: number;
  /** Reduced batch entries (summed like K). */
  r?: number;
  split?: number;
  bias?: "n" | "m";
  activation?: MatmulActivation;
  tile?: CoopTile;
}

function act(a: MatmulActivation | undefined, v: number): number {
  if (a === "relu") return Math.max(v, 0);
  if (a === "sigmoid") return 1 / (1 + Math.exp(-v));
  if (a === "silu") return v / (1 + Math.exp(-v));
  return v;
}

async function check(c: Case): Promise<void> {
  const { m, n, k, transA = false, transB = false, batch = 1, r = 1, split = 1 } = c;
  const A = randArray(batch * r * m * k, 3), B = randArray(batch * r * k * n, 5);
  const bias = c.bias ? randArray(c.bias === "m" ? m : n, 7) : null;
  // Batch outermost, then the reduced dim: entry (z, s) at (z·r + s)·m·k.
  const dims: BatchDim[] = batch > 1 ? [{ size: batch, a: r * m * k, b: r * k * n }] : [];
  const reduce: BatchDim[] = r > 1 ? [{ size: r, a: m * k, b: k * n }] : [];
  const kernel = matmulCoopKernel({
    m,
    n,
    k,
    transA,
    transB,
    batch: dims,
    reduce,
    split,
    bias: !!bias,
    biasRows: c.bias === "m",
    activation: c.activation,
    tile: c.tile ?? COOP_TILE,
  });
  const out = tensor(new Float32Array(split * batch * m * n), [split * batch * m * n]);
  const inputs = [tensor(A, [A.length]), tensor(B, [B.length])];
  if (bias) inputs.push(tensor(bias, [bias.length]));
  run(kernel, inputs, [out]);
  const got = await out.read();
  const h = Math.f16round;
  const label = JSON.stringify(c);
  for (let z = 0; z < batch; z++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0, mag = 0;
        for (let q = 0; q < r; q++) {
          const ao = (z * r + q) * m * k, bo = (z * r + q) * k * n;
          for (let p = 0; p < k; p++) {
            const a = h(A[ao + (transA ? p * m + i : i * k + p)]);
            const b = h(B[bo + (transB ? j * k + p : p * n + j)]);
            s += a * b;
            mag += Math.abs(a * b);
          }
        }
        let g = 0;
        for (let sp = 0; sp < split; sp++) g += got[(sp * batch + z) * m * n + i * n + j];
        const want = act(c.activation, s + (bias ? bias[c.bias === "m" ? i : j] : 0));
        // f32 accumulation in another order: a few ulps of the sum of magnitudes.
        const tol = 1e-5 * mag + 1e-6;
        if (Math.abs(g - want) > tol) {
          assert.fail(`${label}: [${z}][${i}][${j}] got ${g}, want ${want} (tol ${tol})`);
        }
      }
    }
  }
}

const small: CoopTile = { bm: 64, bn: 64, bk: 16, wm: 2, wn: 2 };

Deno.test({
  name: "matmul_coop: odd shapes, both transposes, scalar and vec4 operands",
  ignore: !available,
  fn: async () => {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        await check({ m: 37, n: 45, k: 53, transA, transB }); // scalar loads, every edge
        await check({ m: 132, n: 72, k: 100, transA, transB }); // vec4 loads, partial tiles
      }
    }
    await check({ m: 16, n: 16, k: 16, tile: small });
    await check({ m: 256, n: 256, k: 96 });
  },
});

Deno.test({
  name: "matmul_coop: batch, reduced dims, split and the epilogue",
  ignore: !available,
  fn: async () => {
    await check({ m: 40, n: 36, k: 44, batch: 3, tile: small });
    await check({ m: 24, n: 20, k: 36, r: 3, transA: true, tile: small });
    await check({ m: 64, n: 48, k: 160, split: 3 });
    await check({ m: 70, n: 66, k: 30, bias: "n", activation: "relu" });
    await check({ m: 70, n: 66, k: 30, bias: "m", activation: "silu", transB: true });
    await check({ m: 33, n: 65, k: 17, activation: "sigmoid", tile: small });
  },
});
