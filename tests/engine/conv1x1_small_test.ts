// 1×1 convolution routes: the small kernels (kernels/conv1x1_small.ts) with every epilogue, input
// and weight gradients against float64 and the conv op's gradients by finite differences; the
// weight gradient alone of 1×1 convs up to 1152 weights (more than MAX_BLOCKS channel blocks,
// dealt out in block groups); larger 1×1 convs with sigmoid / SiLU through the matmul op's
// epilogue.

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { conv2d, type Conv2dOptions } from "../../engine/ops/conv2d.ts";
import { small1x1MixRaw, small1x1WeightGradRaw } from "../../engine/ops/conv1x1_small.ts";
import {
  matmul1x1Fits,
  small1x1Fits,
  smallWgradFits,
  wgradIsDirect,
} from "../../kernels/conv_plan.ts";
import { noGrad } from "../../engine/autograd.ts";
import { scope } from "../../engine/scope.ts";
import { run } from "../../engine/launch.ts";
import { empty, type Tensor, tensor } from "../../engine/tensor.ts";
import { convGeometry, NO_EPILOGUE } from "../../kernels/conv2d.ts";
import {
  MAX_BLOCKS,
  smallWgradKernel,
  smallWgradSplits,
  wgradBlocks,
} from "../../kernels/conv1x1_small.ts";
import { splitReduceKernel } from "../../kernels/conv2d_wgrad.ts";
import { activationRef, assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

type Act = NonNullable<Conv2dOptions["activation"]>;

/** y[b, o, p] = Σ_c w[o, c]·x[b, c, p] (+ bias, activation), float64. */
function mixRef(
  x: Float32Array,
  w: Float32Array,
  b: number,
  cin: number,
  cout: number,
  p: number,
  wAt: (o: number, c: number) => number,
  bias?: Float32Array,
  a: Act = "none",
  slopes?: Float32Array,
): Float64Array {
  const y = new Float64Array(b * cout * p);
  for (let n = 0; n < b; n++) {
    for (let o = 0; o < cout; o++) {
      for (let q = 0; q < p; q++) {
        let s = bias ? bias[o] : 0;
        for (let c = 0; c < cin; c++) s += w[wAt(o, c)] * x[(n * cin + c) * p + q];
        y[(n * cout + o) * p + q] = activationRef(
          a,
          s,
          slopes ? slopes[slopes.length === 1 ? 0 : o] : 0,
        );
      }
    }
  }
  return y;
}

interface Case {
  name: string;
  x: number[];
  co: number;
  bias?: boolean;
  act?: Act;
  slopes?: number;
}

const B = 2;
const cases: Case[] = [
  { name: "3→5 bias on 7×9", x: [B, 3, 7, 9], co: 5, bias: true },
  { name: "5→1 bias on 7×9 (direct forward)", x: [B, 5, 7, 9], co: 1, bias: true },
  {
    name: "6→4 bias prelu on 7×8 (vec4)",
    x: [B, 6, 7, 8],
    co: 4,
    bias: true,
    act: "prelu",
    slopes: 4,
  },
  { name: "3→10 bias silu on 7×8 (vec4)", x: [B, 3, 7, 8], co: 10, bias: true, act: "silu" },
  { name: "16→8 relu on 7×9", x: [B, 16, 7, 9], co: 8, act: "relu" },
  {
    name: "20→12 bias sigmoid on 5×8 (6 channel blocks)",
    x: [B, 20, 5, 8],
    co: 12,
    bias: true,
    act: "sigmoid",
  },
];

function inputs(c: Case, seed: number) {
  const ci = c.x[1];
  return {
    x: randArray(c.x.reduce((a, b) => a * b), seed),
    w: randArray(c.co * ci, seed + 1, -0.5, 0.5),
    bias: c.bias ? randArray(c.co, seed + 2) : undefined,
    slopes: c.slopes ? randArray(c.slopes, seed + 3, 0.1, 0.4) : undefined,
  };
}

for (const [k, c] of cases.entries()) {
  const ci = c.x[1], p = c.x[2] * c.x[3];
  const ws = [c.co, ci, 1, 1];
  Deno.test(`small 1×1 conv ${c.name}: forward matches float64`, async () => {
    assert.ok(small1x1Fits(convGeometry(c.x, ws)), "takes the small kernels");
    const d = inputs(c, 10 * k + 1);
    const y = scope(() =>
      conv2d(tensor(d.x, c.x), tensor(d.w, ws), {
        bias: d.bias && tensor(d.bias),
        activation: c.act,
        preluSlope: d.slopes && tensor(d.slopes),
      })
    );
    assert.deepEqual([...y.shape], [B, c.co, c.x[2], c.x[3]]);
    const ref = mixRef(d.x, d.w, B, ci, c.co, p, (o, i) => o * ci + i, d.bias, c.act, d.slopes);
    assertClose(await y.read(), ref, { what: c.name, atol: 1e-5, rtol: 1e-4 });
    y.dispose();
  });
}

// Backward kernels directly, on images large enough for several weight-gradient splits.
const backward: [number[], number][] = [
  [[2, 3, 41, 37], 10], // scalar loads, one channel block, 3·10 weights
  [[2, 16, 40, 40], 8], // vec4, two input-channel blocks
  [[1, 20, 13, 11], 12], // scalar, 3 × 2 blocks, partial blocks both ways
  [[2, 1, 9, 12], 200], // one input channel, 4 output-channel blocks
  [[2, 8, 9, 15], 1], // the input gradient of 8→1 (co = 1: an outer product)
];
for (const [k, [xs, co]] of backward.entries()) {
  const ci = xs[1], p = xs[2] * xs[3], ws = [co, ci, 1, 1];
  Deno.test(`small 1×1 conv ${ci}→${co} on ${xs.join("×")}: input and weight gradients match float64`, async () => {
    const g = convGeometry(xs, ws);
    assert.ok(small1x1Fits(g));
    const b = wgradBlocks(ci, co);
    assert.ok(b.nci * b.nco <= 8);
    const x = randArray(xs.reduce((a, v) => a * v), 50 + k);
    const w = randArray(co * ci, 60 + k, -0.5, 0.5);
    const dy = randArray(xs[0] * co * p, 70 + k);
    const { dx, dw, db } = scope(() => {
      const dyt = tensor(dy, [xs[0], co, xs[2], xs[3]]);
      const dx = small1x1MixRaw(g, "dgrad", dyt, tensor(w, ws), NO_EPILOGUE).y;
      const { dw, db } = small1x1WeightGradRaw(g, tensor(x, xs), dyt, true);
      return { dx, dw, db: db! };
    });
    const dxRef = mixRef(dy, w, xs[0], co, ci, p, (o, i) => i * ci + o);
    assertClose(await dx.read(), dxRef, { what: "dx", atol: 1e-5, rtol: 1e-4 });
    const dwRef = new Float64Array(co * ci), dbRef = new Float64Array(co);
    for (let n = 0; n < xs[0]; n++) {
      for (let o = 0; o < co; o++) {
        for (let q = 0; q < p; q++) {
          const g0 = dy[(n * co + o) * p + q];
          dbRef[o] += g0;
          for (let i = 0; i < ci; i++) dwRef[o * ci + i] += g0 * x[(n * ci + i) * p + q];
        }
      }
    }
    assertClose(await dw.read(), dwRef, { what: "dw", atol: 1e-4, rtol: 1e-4 });
    assertClose(await db.read(), dbRef, { what: "db", atol: 1e-4, rtol: 1e-4 });
    for (const t of [dx, dw, db]) t.dispose();
  });
}

Deno.test("small 1×1 weight gradient splits its pixels over several workgroups", () => {
  assert.ok(smallWgradSplits({ batch: 2, ci: 3, co: 10, pixels: 41 * 37 }).splits > 1);
  const big = smallWgradSplits({ batch: 8, ci: 16, co: 8, pixels: 512 * 512 });
  assert.ok(big.splits > 100 && big.splits <= 1024);
  assert.ok(!small1x1Fits(convGeometry([1, 24, 4, 4], [24, 24, 1, 1])), "576 weights: GEMM");
});

/** dw [co, ci] and db [co] of a 1×1 conv, float64. */
function wgradRef(x: Float32Array, dy: Float32Array, b: number, ci: number, co: number, p: number) {
  const dw = new Float64Array(co * ci), db = new Float64Array(co);
  for (let n = 0; n < b; n++) {
    for (let o = 0; o < co; o++) {
      for (let q = 0; q < p; q++) {
        const g0 = dy[(n * co + o) * p + q];
        db[o] += g0;
        for (let i = 0; i < ci; i++) dw[o * ci + i] += g0 * x[(n * ci + i) * p + q];
      }
    }
  }
  return { dw, db };
}

// The weight gradient alone of 1×1 convs with more than MAX_BLOCKS channel blocks (up to 1152
// weights: forward and input gradient stay on the conv kernels): through the op's launch
// (smallWgradSplits) and with forced splits, scalar (odd H·W) and vec4 (H·W % 4 = 0) loads.
const manyBlocks: [xs: number[], co: number, bias: boolean][] = [
  [[2, 24, 13, 11], 24, false], // TinyCD's 24→24: 3 × 3 blocks in groups of 5 + 4, scalar
  [[2, 20, 8, 10], 33, true], // 3 × 5 blocks, partial both ways, bias, vec4
  [[1, 9, 7, 9], 40, true], // input blocks of 8 + 1, 2 × 5 blocks, scalar
  [[2, 48, 4, 8], 24, false], // 6 × 3 blocks in 3 groups, vec4
  [[1, 1152, 3, 5], 1, true], // 144 blocks of 8 × 1 in 18 groups
];
for (const [k, [xs, co, bias]] of manyBlocks.entries()) {
  const ci = xs[1], p = xs[2] * xs[3], ws = [co, ci, 1, 1];
  const name = `${ci}→${co}${bias ? " bias" : ""} on ${xs.join("×")}`;
  Deno.test(`small 1×1 weight gradient ${name} (block groups) matches float64`, async () => {
    const g = convGeometry(xs, ws);
    assert.ok(smallWgradFits(g) && !small1x1Fits(g) && !wgradIsDirect(g), "wgrad only");
    const b = wgradBlocks(ci, co);
    assert.ok(b.nci * b.nco > MAX_BLOCKS && b.groups > 1 && b.perGroup <= MAX_BLOCKS);
    const x = randArray(xs.reduce((a, v) => a * v), 90 + k);
    const dy = randArray(xs[0] * co * p, 95 + k);
    const ref = wgradRef(x, dy, xs[0], ci, co, p);
    const d = { batch: xs[0], ci, co, pixels: p };
    const units = smallWgradSplits(d).units;
    // The op's own launch, then 1, 3 and 7 splits directly (the last chunk shorter).
    for (const want of [0, 1, 3, 7]) {
      const what = want ? `${want} splits` : "op";
      const { dw, db } = scope(() => {
        const xt = tensor(x, xs), dyt = tensor(dy, [xs[0], co, xs[2], xs[3]]);
        if (!want) return small1x1WeightGradRaw(g, xt, dyt, bias);
        const chunk = Math.ceil(units / want), splits = Math.ceil(units / chunk);
        const part = empty([splits, co, ci + (bias ? 1 : 0)]);
        run(smallWgradKernel({ ...d, bias, splits, chunk }), [xt, dyt], [part]);
        const dw = empty(ws), db = bias ? empty([co]) : null;
        run(splitReduceKernel({ splits, co, cols: ci, bias }), [part], db ? [dw, db] : [dw]);
        return { dw, db };
      });
      assertClose(await dw.read(), ref.dw, { what: `dw (${what})`, atol: 1e-4, rtol: 1e-4 });
      if (bias) {
        assertClose(await db!.read(), ref.db, { what: `db (${what})`, atol: 1e-4, rtol: 1e-4 });
      }
      for (const t of [dw, db]) t?.dispose();
    }
  });
}

Deno.test("small 1×1 weight gradient keeps splits × block groups near 2048 workgroups", () => {
  for (const [ci, co] of [[24, 24], [48, 24], [32, 16], [16, 64], [1152, 1], [1, 1152]]) {
    const d = { batch: 8, ci, co, pixels: 256 * 256 };
    const { groups, perGroup } = wgradBlocks(ci, co);
    const { splits } = smallWgradSplits(d);
    assert.ok(perGroup <= MAX_BLOCKS, `${ci}→${co}: ${perGroup} blocks per workgroup`);
    assert.ok(splits > 1 && splits * groups <= 2048, `${ci}→${co}: ${splits} × ${groups}`);
    assert.ok(smallWgradFits(convGeometry([8, ci, 256, 256], [co, ci, 1, 1])));
  }
  assert.ok(!smallWgradFits(convGeometry([1, 40, 4, 4], [33, 40, 1, 1])), "1320 weights");
});

// Through the conv op: forward and input gradient on the conv kernels, weight and bias gradients
// on the small kernel (20→33: 660 weights, 15 blocks).
Deno.test("1×1 conv 20→33 bias (small weight gradient only): gradients match finite differences", async () => {
  const xs = [2, 20, 5, 7], ws = [33, 20, 1, 1];
  assert.ok(smallWgradFits(convGeometry(xs, ws)) && !small1x1Fits(convGeometry(xs, ws)));
  await gradCheck(
    (xt, wt, bt) => conv2d(xt, wt, { bias: bt }),
    [
      { data: randArray(xs.reduce((a, v) => a * v), 201), shape: xs },
      { data: randArray(660, 202, -0.3, 0.3), shape: ws },
      { data: randArray(33, 203), shape: [33] },
    ],
    { maxPoints: 8 },
  );
});

// Autograd through the conv op: x, w, bias (and the slope) by finite differences.
for (const [k, c] of cases.entries()) {
  if (c.act === "relu") continue; // kink: conv2d's relu backward is shared and tested there
  const ci = c.x[1];
  const ws = [c.co, ci, 1, 1];
  Deno.test(`small 1×1 conv ${c.name}: gradients match finite differences`, async () => {
    const d = inputs(c, 1000 + 10 * k);
    if (d.slopes) {
      // PReLU's kink: pre-activations kept away from zero (small weights, bias ±2).
      d.w = d.w.map((v) => v * 0.2);
      d.bias = d.bias!.map((_, o) => (o % 2 ? 2 : -2));
    }
    const ins = [{ data: d.x, shape: c.x }, { data: d.w, shape: ws }];
    if (d.bias) ins.push({ data: d.bias, shape: [c.co] });
    if (d.slopes) ins.push({ data: d.slopes, shape: [d.slopes.length] });
    await gradCheck(
      (...ts: Tensor[]) =>
        conv2d(ts[0], ts[1], {
          bias: d.bias ? ts[2] : undefined,
          activation: c.act,
          preluSlope: d.slopes ? ts[3] : undefined,
        }),
      ins,
      { maxPoints: 12 },
    );
  });
}

// Above 1152 weights (matmul1x1Fits), sigmoid (always) and SiLU (without recorded gradients: BN-folded
// inference) take the matmul op's fused epilogue; SiLU with gradients keeps the conv kernels.
for (const a of ["sigmoid", "silu"] as const) {
  const xs = [2, 40, 7, 9], ws = [33, 40, 1, 1];
  Deno.test(`1×1 conv 40→33 ${a} (matmul epilogue) matches float64, gradients too`, async () => {
    assert.ok(matmul1x1Fits(convGeometry(xs, ws)));
    const x = randArray(xs.reduce((p, v) => p * v), 81), w = randArray(1320, 82, -0.3, 0.3);
    const bias = randArray(33, 83);
    const y = scope(() =>
      noGrad(() => conv2d(tensor(x, xs), tensor(w, ws), { bias: tensor(bias), activation: a }))
    );
    const ref = mixRef(x, w, 2, 40, 33, 63, (o, i) => o * 40 + i, bias, a);
    assertClose(await y.read(), ref, { what: a, atol: 1e-5, rtol: 1e-4 });
    y.dispose();
    await gradCheck(
      (xt, wt, bt) => conv2d(xt, wt, { bias: bt, activation: a }),
      [{ data: x, shape: xs }, { data: w, shape: ws }, { data: bias, shape: [33] }],
      { maxPoints: 8 },
    );
  });
}
