import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { layerNorm, layerNorm2d } from "../../engine/ops/layer_norm.ts";
import { batchNorm2d, instanceNorm2d } from "../../engine/ops/norm.ts";
import { scope } from "../../engine/scope.ts";
import { full, parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { backward } from "../../engine/autograd.ts";
import { reluDropout2d } from "../../engine/ops/dropout.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { silu } from "../../engine/ops/activation.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { inPlaceRuns } from "./in_place_sums.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

const B = 2, C = 3, H = 7, W = 9;
const SHAPE = [B, C, H, W];
const N = B * C * H * W;

interface Stats {
  y: Float64Array;
  mean: Float64Array;
  biasedVar: Float64Array;
  unbiasedVar: Float64Array;
}

/** float64 normalisation of [b, c, hw] data; `perPlane`: instance statistics, else batch. */
function refNorm(
  x: ArrayLike<number>,
  [b, c, hw]: number[],
  perPlane: boolean,
  w: ArrayLike<number> | null,
  bias: ArrayLike<number> | null,
  eps = 1e-5,
  fixed?: { mean: ArrayLike<number>; var: ArrayLike<number> },
): Stats {
  const groups = perPlane ? b * c : c;
  const members = (g: number): number[] => {
    const planes = perPlane ? [g] : Array.from({ length: b }, (_, i) => i * c + g);
    return planes.flatMap((p) => Array.from({ length: hw }, (_, k) => p * hw + k));
  };
  const mean = new Float64Array(groups), bv = new Float64Array(groups);
  const uv = new Float64Array(groups);
  for (let g = 0; g < groups; g++) {
    const idx = members(g);
    const m = idx.reduce((s, i) => s + x[i], 0) / idx.length;
    const q = idx.reduce((s, i) => s + (x[i] - m) ** 2, 0);
    mean[g] = m;
    bv[g] = q / idx.length;
    uv[g] = q / (idx.length - 1);
  }
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const plane = Math.floor(i / hw), ch = plane % c;
    const g = perPlane ? plane : ch;
    const m = fixed ? fixed.mean[ch] : mean[g];
    const v = fixed ? fixed.var[ch] : bv[g];
    y[i] = ((x[i] - m) / Math.sqrt(v + eps)) * (w ? w[ch] : 1) + (bias ? bias[ch] : 0);
  }
  return { y, mean, biasedVar: bv, unbiasedVar: uv };
}

async function readAndDispose(t: Tensor): Promise<Float32Array> {
  const v = (await t.read()) as Float32Array;
  t.dispose();
  return v;
}

Deno.test("batchNorm2d training: batch statistics, affine, running statistics over 3 steps", async () => {
  const w = randArray(C, 2, 0.5, 1.5), b = randArray(C, 3);
  const weight = tensor(w, [C]), bias = tensor(b, [C]);
  const rm = full([C], 0).keep(), rv = full([C], 1).keep();
  const refMean = new Float64Array(C), refVar = new Float64Array(C).fill(1);
  const momentum = 0.3;
  for (let step = 0; step < 3; step++) {
    // different scales and offsets each step, so the running statistics really move
    const xs = randArray(N, 10 + step, -1 - step, 2 + 2 * step);
    const y = scope(() =>
      batchNorm2d(tensor(xs, SHAPE), {
        weight,
        bias,
        runningMean: rm,
        runningVar: rv,
        training: true,
        momentum,
      })
    );
    const ref = refNorm(xs, [B, C, H * W], false, w, b);
    assertClose(await readAndDispose(y), ref.y, { what: `y step ${step}`, atol: 2e-5 });
    for (let c = 0; c < C; c++) {
      refMean[c] = (1 - momentum) * refMean[c] + momentum * ref.mean[c];
      refVar[c] = (1 - momentum) * refVar[c] + momentum * ref.unbiasedVar[c];
    }
    assertClose(await rm.read(), refMean, { what: `running mean step ${step}` });
    assertClose(await rv.read(), refVar, { what: `running var step ${step}` });
  }
  // eval uses the running statistics just accumulated
  const xs = randArray(N, 20);
  const y = scope(() =>
    batchNorm2d(tensor(xs, SHAPE), {
      weight,
      bias,
      runningMean: rm,
      runningVar: rv,
      training: false,
    })
  );
  const ref = refNorm(xs, [B, C, H * W], false, w, b, 1e-5, { mean: refMean, var: refVar });
  assertClose(await readAndDispose(y), ref.y, { what: "eval y" });
  for (const t of [weight, bias, rm, rv]) t.dispose();
});

Deno.test("batchNorm2d default momentum, no affine, offset data across several chunks", async () => {
  // 67·71 = 4757 values per plane: two stage-1 chunks, the second partial; a mean of 50 would
  // cancel the variance away with naive Σx² in f32.
  const shape = [2, 3, 67, 71];
  const n = 2 * 3 * 67 * 71;
  const xs = randArray(n, 5, 49, 51);
  const rm = full([3], 0).keep(), rv = full([3], 1).keep();
  const y = scope(() =>
    batchNorm2d(tensor(xs, shape), { runningMean: rm, runningVar: rv, training: true })
  );
  const ref = refNorm(xs, [2, 3, 67 * 71], false, null, null);
  assertClose(await readAndDispose(y), ref.y, { what: "y", atol: 1e-4, rtol: 1e-4 });
  assertClose(await rm.read(), Array.from(ref.mean, (m) => 0.1 * m), { what: "running mean" });
  assertClose(await rv.read(), Array.from(ref.unbiasedVar, (v) => 0.9 + 0.1 * v), {
    what: "running var",
  });
  rm.dispose();
  rv.dispose();
});

Deno.test("batchNorm2d training gradient (x, weight, bias)", async () => {
  await gradCheck(
    (x, w, b) => batchNorm2d(x, { weight: w, bias: b, training: true }),
    [
      { data: randArray(N, 31), shape: SHAPE },
      { data: randArray(C, 32, 0.5, 1.5), shape: [C] },
      { data: randArray(C, 33), shape: [C] },
    ],
  );
  await gradCheck((x) => batchNorm2d(x, { training: true }), [
    { data: randArray(N, 34), shape: SHAPE },
  ]);
});

Deno.test("batchNorm2d eval gradient (x, weight, bias) with fixed running statistics", async () => {
  const rm = tensor(randArray(C, 40), [C]).keep();
  const rv = tensor(randArray(C, 41, 0.5, 2), [C]).keep();
  await gradCheck(
    (x, w, b) =>
      batchNorm2d(x, { weight: w, bias: b, runningMean: rm, runningVar: rv, training: false }),
    [
      { data: randArray(N, 42), shape: SHAPE },
      { data: randArray(C, 43, 0.5, 1.5), shape: [C] },
      { data: randArray(C, 44), shape: [C] },
    ],
  );
  rm.dispose();
  rv.dispose();
});

Deno.test("instanceNorm2d forward matches float64, with and without affine", async () => {
  const xs = randArray(N, 50, -2, 3);
  const w = randArray(C, 51, 0.5, 1.5), b = randArray(C, 52);
  const plain = scope(() => instanceNorm2d(tensor(xs, SHAPE)));
  assertClose(await readAndDispose(plain), refNorm(xs, [B, C, H * W], true, null, null).y);
  const affine = scope(() =>
    instanceNorm2d(tensor(xs, SHAPE), { weight: tensor(w, [C]), bias: tensor(b, [C]), eps: 1e-3 })
  );
  assertClose(await readAndDispose(affine), refNorm(xs, [B, C, H * W], true, w, b, 1e-3).y);
  // several chunks per plane, offset data
  const big = randArray(2 * 67 * 71, 53, 99, 101);
  const y = scope(() => instanceNorm2d(tensor(big, [1, 2, 67, 71])));
  assertClose(await readAndDispose(y), refNorm(big, [1, 2, 67 * 71], true, null, null).y, {
    atol: 2e-4,
    rtol: 1e-4,
  });
});

Deno.test("instanceNorm2d gradient (x, weight, bias)", async () => {
  await gradCheck(
    (x, w, b) => instanceNorm2d(x, { weight: w, bias: b }),
    [
      { data: randArray(N, 61), shape: SHAPE },
      { data: randArray(C, 62, 0.5, 1.5), shape: [C] },
      { data: randArray(C, 63), shape: [C] },
    ],
  );
  await gradCheck((x) => instanceNorm2d(x), [{ data: randArray(N, 64), shape: SHAPE }]);
});

/** float64 layer norm over rows given as index lists. */
function refRows(
  x: ArrayLike<number>,
  rows: number[][],
  w: ArrayLike<number> | null,
  b: ArrayLike<number> | null,
  eps = 1e-5,
): Float64Array {
  const y = new Float64Array(x.length);
  for (const idx of rows) {
    const m = idx.reduce((s, i) => s + x[i], 0) / idx.length;
    const v = idx.reduce((s, i) => s + (x[i] - m) ** 2, 0) / idx.length;
    idx.forEach((i, j) => {
      y[i] = ((x[i] - m) / Math.sqrt(v + eps)) * (w ? w[j] : 1) + (b ? b[j] : 0);
    });
  }
  return y;
}

Deno.test("layerNorm over the last dimension: forward and gradient", async () => {
  const shape = [2, 5, 7];
  const xs = randArray(70, 70, -2, 2);
  const w = randArray(7, 71, 0.5, 1.5), b = randArray(7, 72);
  const rows = Array.from({ length: 10 }, (_, r) => Array.from({ length: 7 }, (_, j) => r * 7 + j));
  const y = scope(() =>
    layerNorm(tensor(xs, shape), { weight: tensor(w, [7]), bias: tensor(b, [7]) })
  );
  assertClose(await readAndDispose(y), refRows(xs, rows, w, b));
  const plain = scope(() => layerNorm(tensor(xs, shape), { eps: 1e-3 }));
  assertClose(await readAndDispose(plain), refRows(xs, rows, null, null, 1e-3));
  await gradCheck((x, wt, bs) => layerNorm(x, { weight: wt, bias: bs }), [
    { data: xs, shape },
    { data: w, shape: [7] },
    { data: b, shape: [7] },
  ]);
  await gradCheck((x) => layerNorm(x), [{ data: xs, shape }]);
});

Deno.test("layerNorm2d over channels of NCHW: forward and gradient", async () => {
  const shape = [2, 5, 3, 3];
  const hw = 9;
  const xs = randArray(90, 80, -2, 2);
  const w = randArray(5, 81, 0.5, 1.5), b = randArray(5, 82);
  const rows: number[][] = [];
  for (let n = 0; n < 2; n++) {
    for (let p = 0; p < hw; p++) {
      rows.push(Array.from({ length: 5 }, (_, c) => (n * 5 + c) * hw + p));
    }
  }
  const y = scope(() =>
    layerNorm2d(tensor(xs, shape), { weight: tensor(w, [5]), bias: tensor(b, [5]) })
  );
  assertClose(await readAndDispose(y), refRows(xs, rows, w, b));
  await gradCheck((x, wt, bs) => layerNorm2d(x, { weight: wt, bias: bs }), [
    { data: xs, shape },
    { data: w, shape: [5] },
    { data: b, shape: [5] },
  ]);
});

Deno.test("vec4 path (H·W a multiple of 4): batch and instance norm forward and gradients", async () => {
  const shape = [3, 5, 4, 5], c = 5, hw = 20, n = 300;
  const xs = randArray(n, 90, -1, 3);
  const w = randArray(c, 91, 0.5, 1.5), b = randArray(c, 92);
  const rm = full([c], 0).keep(), rv = full([c], 1).keep();
  const y = scope(() =>
    batchNorm2d(tensor(xs, shape), {
      weight: tensor(w, [c]),
      bias: tensor(b, [c]),
      runningMean: rm,
      runningVar: rv,
      training: true,
    })
  );
  const ref = refNorm(xs, [3, c, hw], false, w, b);
  assertClose(await readAndDispose(y), ref.y, { what: "batch norm y" });
  assertClose(await rv.read(), Array.from(ref.unbiasedVar, (v) => 0.9 + 0.1 * v));
  const inst = scope(() => instanceNorm2d(tensor(xs, shape), { weight: tensor(w, [c]) }));
  assertClose(await readAndDispose(inst), refNorm(xs, [3, c, hw], true, w, null).y);
  await gradCheck((x, wt, bs) => batchNorm2d(x, { weight: wt, bias: bs, training: true }), [
    { data: xs, shape },
    { data: w, shape: [c] },
    { data: b, shape: [c] },
  ]);
  await gradCheck(
    (x, wt) => batchNorm2d(x, { weight: wt, runningMean: rm, runningVar: rv, training: false }),
    [{ data: xs, shape }, { data: w, shape: [c] }],
  );
  await gradCheck((x, wt, bs) => instanceNorm2d(x, { weight: wt, bias: bs }), [
    { data: xs, shape },
    { data: w, shape: [c] },
    { data: b, shape: [c] },
  ]);
  rm.dispose();
  rv.dispose();
  // 64·68 = 4352 values per plane: two chunks in vec4 units, the second partial, offset data
  const big = randArray(2 * 2 * 64 * 68, 93, 29, 31);
  const yb = scope(() => batchNorm2d(tensor(big, [2, 2, 64, 68]), { training: true }));
  assertClose(await readAndDispose(yb), refNorm(big, [2, 2, 64 * 68], false, null, null).y, {
    atol: 1e-4,
    rtol: 1e-4,
  });
});

Deno.test("layer norm parameter gradients over several row blocks and on the vec4 path", async () => {
  // 303 rows: two blocks of the column sums, the second partial
  const shape = [3, 101, 5];
  await gradCheck((x, wt, bs) => layerNorm(x, { weight: wt, bias: bs }), [
    { data: randArray(1515, 100, -2, 2), shape },
    { data: randArray(5, 101, 0.5, 1.5), shape: [5] },
    { data: randArray(5, 102), shape: [5] },
  ], { maxPoints: 8 });
  // H·W = 20: the plane sums of the channel gradients run on vec4
  await gradCheck((x, wt, bs) => layerNorm2d(x, { weight: wt, bias: bs }), [
    { data: randArray(60, 103, -2, 2), shape: [1, 3, 4, 5] },
    { data: randArray(3, 104, 0.5, 1.5), shape: [3] },
    { data: randArray(3, 105), shape: [3] },
  ]);
});

/** Gradients of Σ y·r w.r.t. x, weight and bias, for y = f(x, weight, bias). */
async function gradsOf(
  f: (x: Tensor, w: Tensor, b: Tensor) => Tensor,
  x: Float32Array,
  shape: number[],
  w: Float32Array,
  b: Float32Array,
): Promise<{ y: Float32Array; grads: Float32Array[] }> {
  const ps = [parameter(x, shape), parameter(w, [w.length]), parameter(b, [b.length])];
  const r = tensor(randArray(x.length, 99), shape);
  let yt: Tensor | null = null;
  scope(() => {
    const y = f(ps[0], ps[1], ps[2]);
    yt = y.keep();
    backward(sum(mul(y, r)));
  });
  const y = (await yt!.read()) as Float32Array;
  const grads = [];
  for (const p of ps) {
    grads.push((await p.grad!.read()) as Float32Array);
    p.dispose();
  }
  r.dispose();
  yt!.kept = false;
  yt!.dispose();
  return { y, grads };
}

/** Affine BatchNorm options over `channels` with fixed running statistics (mean 0.1, var 2). */
function bnOptions(channels: number, training: boolean) {
  return (weight: Tensor, bias: Tensor) => ({
    weight,
    bias,
    runningMean: full([channels], 0.1),
    runningVar: full([channels], 2),
    training,
  });
}

Deno.test("batchNorm2d with fused ReLU + Dropout2d equals the ops in sequence, forward and backward", async () => {
  for (const shape of [SHAPE, [2, 3, 4, 6]]) {
    const n = shape.reduce((a, b) => a * b);
    const x = randArray(n, 41, -2, 3);
    const w = randArray(shape[1], 42, 0.5, 1.5), b = randArray(shape[1], 43, -0.3, 0.3);
    for (const training of [true, false]) {
      const dropout = { p: 0.4, training, seed: 1234 };
      const opts = bnOptions(shape[1], training);
      const fused = await gradsOf(
        (xt, wt, bt) => batchNorm2d(xt, { ...opts(wt, bt), post: { dropout } }),
        x,
        shape,
        w,
        b,
      );
      const apart = await gradsOf(
        (xt, wt, bt) => reluDropout2d(batchNorm2d(xt, opts(wt, bt)), 0.4, dropout),
        x,
        shape,
        w,
        b,
      );
      const what = `${shape} training ${training}`;
      assertClose(fused.y, apart.y, { what: `${what} y` });
      if (training && !fused.y.some((v) => v === 0)) throw new Error("nothing dropped");
      ["x", "weight", "bias"].forEach((name, k) =>
        assertClose(fused.grads[k], apart.grads[k], { what: `${what} d${name}`, atol: 1e-4 })
      );
    }
  }
});

Deno.test("batchNorm2d with a fused SiLU equals silu(batchNorm2d), forward and backward, batch and running statistics", async () => {
  for (const shape of [SHAPE, [2, 3, 4, 6]]) {
    const n = shape.reduce((a, b) => a * b);
    const x = randArray(n, 51, -2, 3);
    const w = randArray(shape[1], 52, 0.5, 1.5), b = randArray(shape[1], 53, -0.3, 0.3);
    for (const training of [true, false]) {
      const opts = bnOptions(shape[1], training);
      const fused = await gradsOf(
        (xt, wt, bt) => batchNorm2d(xt, { ...opts(wt, bt), post: { activation: "silu" } }),
        x,
        shape,
        w,
        b,
      );
      const apart = await gradsOf(
        (xt, wt, bt) => silu(batchNorm2d(xt, opts(wt, bt))),
        x,
        shape,
        w,
        b,
      );
      const what = `${shape} training ${training}`;
      assertClose(fused.y, apart.y, { what: `${what} y` });
      ["x", "weight", "bias"].forEach((name, k) =>
        assertClose(fused.grads[k], apart.grads[k], { what: `${what} d${name}`, atol: 1e-4 })
      );
    }
  }
});

Deno.test("batchNorm2d with a fused SiLU and no affine parameters: gradient by finite differences", async () => {
  const shape = [2, 3, 5, 3];
  const x = randArray(shape.reduce((a, b) => a * b), 61, -2, 2);
  await gradCheck(
    (xt) => batchNorm2d(xt, { training: true, post: { activation: "silu" } }),
    [{ data: x, shape }],
  );
  const bad = () =>
    batchNorm2d(tensor(x, shape), {
      training: true,
      post: { activation: "silu", dropout: { p: 0.5, training: true, seed: 1 } },
    });
  let message = "";
  try {
    scope(bad);
  } catch (e) {
    message = (e as Error).message;
  }
  if (!message.includes("dropout follows a ReLU only")) throw new Error(`got "${message}"`);
});

Deno.test("layerNorm weight and bias gradients match float64 in every column (past 64 threads)", async () => {
  // 300 rows × 70 columns: 2 row blocks × 70 columns = 140 summing threads, more than one
  // 64-thread workgroup (a grid sized for 256-thread groups left columns ≥ 64 at zero).
  const [rows, len] = [300, 70];
  const xs = randArray(rows * len, 110, -2, 2), gs = randArray(rows * len, 111);
  const w = parameter(randArray(len, 112, 0.5, 1.5), [len]);
  const b = parameter(randArray(len, 113), [len]);
  scope(() => {
    const y = layerNorm(tensor(xs, [1, rows, len]), { weight: w, bias: b, eps: 1e-6 });
    backward(sum(mul(y, tensor(gs, [1, rows, len]))));
  });
  const gw = new Float64Array(len), gb = new Float64Array(len);
  for (let r = 0; r < rows; r++) {
    const row = xs.subarray(r * len, (r + 1) * len);
    const m = row.reduce((s, v) => s + v, 0) / len;
    const v = row.reduce((s, x) => s + (x - m) ** 2, 0) / len;
    for (let c = 0; c < len; c++) {
      gw[c] += gs[r * len + c] * (row[c] - m) / Math.sqrt(v + 1e-6);
      gb[c] += gs[r * len + c];
    }
  }
  assertClose((await w.grad!.read()) as Float32Array, gw, { atol: 1e-4, rtol: 1e-4 });
  assertClose((await b.grad!.read()) as Float32Array, gb, { atol: 1e-4, rtol: 1e-4 });
  for (const t of [w, b]) {
    t.grad!.dispose();
    t.kept = false;
    t.dispose();
  }
});

// A tensor that feeds a norm and another op (SNUNet's residual conv output, TinyCD's gated
// features): where the other op's gradient comes first, the norm's rule adds dx into it
// (autograd's `into`) with no grad_add pass; equal to the separate sum, in both orders, on the
// scalar (odd plane) and vec4 paths, batch and instance statistics.
for (
  const [name, shape] of [["odd planes", [2, 3, 5, 7]], ["vec4", [2, 3, 4, 8]]] as [
    string,
    number[],
  ][]
) {
  for (const norm of ["batch", "instance"] as const) {
    Deno.test(`${norm} norm (${name}) adds its input gradient into the gradient so far: equal to separate sums, no grad_add`, async () => {
      const n = shape.reduce((a, b) => a * b);
      const xv = randArray(n, 70), r1 = randArray(n, 71), r2 = randArray(n, 72);
      const wv = randArray(3, 73, 0.5, 1.5), bv = randArray(3, 74);
      const runs = await inPlaceRuns(
        () => [parameter(xv, shape, "x"), parameter(wv, [3], "w"), parameter(bv, [3], "b")],
        ([x, weight, bias]) =>
          norm === "batch"
            ? batchNorm2d(x, { weight, bias, training: true })
            : instanceNorm2d(x, { weight, bias }),
        () => r1,
        r2,
      );
      for (const r of runs.slice(1)) {
        r.grads.forEach((g, k) =>
          assertClose(g, runs[0].grads[k], { what: `grad ${k}`, atol: 1e-5 })
        );
      }
      assert.ok(runs.some((r, k) => k % 2 === 0 && r.adds === 0), "no order summed in place");
      assert.ok(runs.every((r, k) => k % 2 === 0 || r.adds > 0), "apart: a grad_add each");
    });
  }
}
