// engine/precision.ts: the mode is refused without tensor cores, backward products stay f32,
// and (on adapters with tensor cores) f16 forward products stay close to f32 ones while every
// gradient is the f32 mode's bit for bit.

import assert from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { hasFeature, initDevice } from "../../engine/device.ts";
import { conv2d } from "../../engine/ops/conv2d.ts";
import { matmul } from "../../engine/ops/matmul.ts";
import {
  forwardPrecision,
  inBackward,
  parsePrecision,
  setPrecision,
} from "../../engine/precision.ts";
import { scopeAsync } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { COOP_FEATURE } from "../../kernels/matmul_coop.ts";
import { planForward } from "../../kernels/conv_plan.ts";
import { convGeometry, NO_EPILOGUE } from "../../kernels/conv2d.ts";
import { randArray } from "../util.ts";

await initDevice();
const tensorCores = hasFeature(COOP_FEATURE);

Deno.test("precision: parsing, refusal without tensor cores, f32 inside backward", () => {
  assert.equal(parsePrecision("f16"), "f16");
  assert.throws(() => parsePrecision("bf16"), /choose one of f32, f16/);
  if (!tensorCores) {
    assert.throws(() => setPrecision("f16"), /wgpu-cooperative-matrix/);
    assert.equal(forwardPrecision(), "f32");
    return;
  }
  setPrecision("f16");
  try {
    assert.equal(forwardPrecision(), "f16");
    assert.equal(inBackward(() => forwardPrecision()), "f32");
  } finally {
    setPrecision("f32");
  }
});

/** Output and every gradient of f(x, w) in one precision. */
async function outputs(
  p: "f32" | "f16",
  f: (x: Tensor, w: Tensor) => Tensor,
  xs: Float32Array,
  xShape: number[],
  ws: Float32Array,
  wShape: number[],
) {
  setPrecision(p);
  try {
    const x = parameter(xs, xShape), w = parameter(ws, wShape);
    return await scopeAsync(async () => {
      const y = f(x, w);
      // A fixed, non-uniform seed gradient so the backward depends on nothing the mode changes.
      const seed = tensor(randArray(y.size, 9), y.shape);
      backward(y, seed);
      return { y: await y.read(), dx: await x.grad!.read(), dw: await w.grad!.read() };
    }).finally(() => {
      x.dispose();
      w.dispose();
    });
  } finally {
    setPrecision("f32");
  }
}

Deno.test({
  name: "precision f16: forward close to f32, gradients identical (matmul, Winograd conv)",
  ignore: !tensorCores,
  fn: async () => {
    const g = convGeometry([2, 64, 64, 64], [64, 64, 3, 3], { padding: 1 });
    const cases = [
      {
        f: (x: Tensor, w: Tensor) => matmul(x, w),
        xShape: [3, 70, 96],
        wShape: [96, 50],
        tc: true,
      },
      {
        f: (x: Tensor, w: Tensor) => conv2d(x, w, { padding: 1 }),
        xShape: [2, 64, 64, 64],
        wShape: [64, 64, 3, 3],
        // Tensor cores serve this conv where it takes the Winograd F(4×4) GEMM route.
        tc: planForward(g, NO_EPILOGUE).kind === "winograd-f4-gemm",
      },
    ];
    for (const c of cases) {
      const xs = randArray(c.xShape.reduce((a, b) => a * b), 1);
      const ws = randArray(c.wShape.reduce((a, b) => a * b), 2, -0.2, 0.2);
      const a = await outputs("f32", c.f, xs, c.xShape, ws, c.wShape);
      const b = await outputs("f16", c.f, xs, c.xShape, ws, c.wShape);
      let err = 0, mag = 0, same = true;
      for (let i = 0; i < a.y.length; i++) {
        err = Math.max(err, Math.abs(a.y[i] - b.y[i]));
        mag = Math.max(mag, Math.abs(a.y[i]));
      }
      if (c.tc) assert.ok(err > 0, "f16 mode changed nothing: no tensor cores in the forward");
      assert.ok(err < 4e-3 * mag, `forward error ${err} against max |y| ${mag}`);
      for (const k of ["dx", "dw"] as const) {
        for (let i = 0; i < a[k].length; i++) if (a[k][i] !== b[k][i]) same = false;
      }
      assert.ok(same, "gradients differ between modes: a backward product left f32");
    }
  },
});
