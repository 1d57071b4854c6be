// ConvBnAct (engine/nn/conv_bn_act.ts): its fused training forms, its eval fold and its unfolded
// eval form against a float64 reference and against the same layers run op by op (outputs and
// gradients), finite-difference input gradients, and the names it registers (none of its own).

import assert from "node:assert/strict";
import { backward, noGrad } from "../../engine/autograd.ts";
import { PReLU } from "../../engine/nn/activation.ts";
import { Conv2d, ConvTranspose2d } from "../../engine/nn/conv.ts";
import { ConvBnAct, type ConvBnActParts } from "../../engine/nn/conv_bn_act.ts";
import { Dropout2d, resetDropoutStream } from "../../engine/nn/dropout.ts";
import { Module } from "../../engine/nn/module.ts";
import { BatchNorm2d, InstanceNorm2d } from "../../engine/nn/norm.ts";
import { prelu, silu } from "../../engine/ops/activation.ts";
import { conv2d } from "../../engine/ops/conv2d.ts";
import { mul, relu } from "../../engine/ops/elementwise.ts";
import { batchNorm2d, instanceNorm2d } from "../../engine/ops/norm.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { Random } from "../../engine/random.ts";
import { setDispatchTap, stats } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Shape, type Tensor, tensor, write } from "../../engine/tensor.ts";
import { assertClose, gradCheck, initDevice, randArray } from "../util.ts";

await initDevice();

const X_SHAPE = [2, 4, 5, 7];

// ---- float64 reference -------------------------------------------------------------------

interface Geo {
  stride: number;
  padding: number;
  groups: number;
}

/** conv2d of [B, Ci, H, W] with [Co, Ci/g, k, k] (+ bias), float64. */
function refConv(
  x: ArrayLike<number>,
  [b, ci, h, w]: Shape,
  wt: ArrayLike<number>,
  [co, cig, k]: Shape,
  bias: ArrayLike<number> | null,
  { stride, padding, groups }: Geo,
): { y: Float64Array; shape: Shape } {
  const oh = Math.floor((h + 2 * padding - k) / stride) + 1;
  const ow = Math.floor((w + 2 * padding - k) / stride) + 1;
  const y = new Float64Array(b * co * oh * ow);
  const cog = co / groups;
  for (let n = 0; n < b; n++) {
    for (let o = 0; o < co; o++) {
      const g = Math.floor(o / cog);
      for (let oy = 0; oy < oh; oy++) {
        for (let ox = 0; ox < ow; ox++) {
          let s = bias ? bias[o] : 0;
          for (let c = 0; c < cig; c++) {
            for (let ky = 0; ky < k; ky++) {
              for (let kx = 0; kx < k; kx++) {
                const iy = oy * stride - padding + ky, ix = ox * stride - padding + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                s += x[((n * ci + g * cig + c) * h + iy) * w + ix] *
                  wt[((o * cig + c) * k + ky) * k + kx];
              }
            }
          }
          y[((n * co + o) * oh + oy) * ow + ox] = s;
        }
      }
    }
  }
  return { y, shape: [b, co, oh, ow] };
}

/** Transposed conv, stride 1, of [B, Ci, H, W] with [Ci, Co, k, k] (+ bias), float64. */
function refConvT(
  x: ArrayLike<number>,
  [b, ci, h, w]: Shape,
  wt: ArrayLike<number>,
  [, co, k]: Shape,
  bias: ArrayLike<number> | null,
  padding: number,
): { y: Float64Array; shape: Shape } {
  const oh = h + k - 1 - 2 * padding, ow = w + k - 1 - 2 * padding;
  const y = new Float64Array(b * co * oh * ow);
  for (let n = 0; n < b; n++) {
    for (let o = 0; o < co; o++) {
      for (let i = 0; i < oh * ow; i++) y[(n * co + o) * oh * ow + i] = bias ? bias[o] : 0;
      for (let c = 0; c < ci; c++) {
        for (let iy = 0; iy < h; iy++) {
          for (let ix = 0; ix < w; ix++) {
            for (let ky = 0; ky < k; ky++) {
              for (let kx = 0; kx < k; kx++) {
                const oy = iy - padding + ky, ox = ix - padding + kx;
                if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                y[((n * co + o) * oh + oy) * ow + ox] += x[((n * ci + c) * h + iy) * w + ix] *
                  wt[((c * co + o) * k + ky) * k + kx];
              }
            }
          }
        }
      }
    }
  }
  return { y, shape: [b, co, oh, ow] };
}

/** Per-channel (batch) or per-plane (instance) normalisation with biased variance, float64;
 * `stats` given: those (mean, var) instead (eval BatchNorm). */
function refNorm(
  y: Float64Array,
  [b, c, h, w]: Shape,
  o: { perPlane: boolean; gamma?: ArrayLike<number>; beta?: ArrayLike<number> },
  stats?: { mean: ArrayLike<number>; variance: ArrayLike<number> },
): Float64Array {
  const hw = h * w, out = new Float64Array(y.length);
  const groups = o.perPlane ? b * c : c;
  for (let gi = 0; gi < groups; gi++) {
    const ch = o.perPlane ? gi % c : gi;
    const idx: number[] = [];
    for (let n = 0; n < b; n++) {
      if (o.perPlane && n !== Math.floor(gi / c)) continue;
      for (let i = 0; i < hw; i++) idx.push((n * c + ch) * hw + i);
    }
    let m: number, v: number;
    if (stats) [m, v] = [stats.mean[ch], stats.variance[ch]];
    else {
      m = idx.reduce((s, i) => s + y[i], 0) / idx.length;
      v = idx.reduce((s, i) => s + (y[i] - m) ** 2, 0) / idx.length;
    }
    const r = 1 / Math.sqrt(v + 1e-5);
    for (const i of idx) out[i] = (y[i] - m) * r * (o.gamma?.[ch] ?? 1) + (o.beta?.[ch] ?? 0);
  }
  return out;
}

function refAct(y: Float64Array, act: string, slope = 0.25): Float64Array {
  return y.map((z) =>
    act === "relu"
      ? Math.max(z, 0)
      : act === "silu"
      ? z / (1 + Math.exp(-z))
      : act === "prelu"
      ? (z >= 0 ? z : slope * z)
      : z
  );
}

// ---- helpers -----------------------------------------------------------------------------

/** BN with non-trivial affine parameters and running statistics. */
function bnWithStats(c: number, seed: number): BatchNorm2d {
  const bn = new BatchNorm2d(c);
  write(bn.weight, randArray(c, seed, 0.5, 1.5));
  write(bn.bias, randArray(c, seed + 1, -0.5, 0.5));
  write(bn.runningMean, randArray(c, seed + 2, -0.3, 0.3));
  write(bn.runningVar, randArray(c, seed + 3, 0.2, 2));
  return bn;
}

async function host(t: Tensor): Promise<Float32Array> {
  return (await t.read()) as Float32Array;
}

/** y = f(x) and the gradients of Σ r ⊙ y (r fixed) with respect to x and `params`; the
 * parameters' gradients are cleared afterwards. */
async function forwardBackward(
  f: (x: Tensor) => Tensor,
  params: Tensor[],
): Promise<{ y: Float32Array; grads: Float32Array[] }> {
  const x = parameter(randArray(X_SHAPE.reduce((a, b) => a * b), 11), X_SHAPE, "x");
  const y = scope(() => {
    const y = f(x);
    backward(sum(mul(y, tensor(randArray(y.size, 12), y.shape))));
    return y;
  });
  const out = { y: await host(y), grads: [] as Float32Array[] };
  y.dispose();
  for (const p of [x, ...params]) {
    out.grads.push(p.grad ? await host(p.grad) : new Float32Array(p.size));
    p.grad?.dispose();
    p.grad = null;
  }
  x.dispose();
  return out;
}

function conv3(ci: number, co: number, o: Partial<Geo> = {}, seed = 1): Conv2d {
  return new Conv2d(ci, co, { kernel: 3, padding: 1, ...o }, new Random(seed));
}

// ---- tests -------------------------------------------------------------------------------

Deno.test("ConvBnAct training, BN → ReLU → Dropout2d fused: equals the layers op by op and the float64 reference on kept channels", async () => {
  const conv = conv3(4, 6, { stride: 2 });
  const bn = bnWithStats(6, 20);
  const m = new ConvBnAct({ conv: ["c", conv], bn: ["b", bn], act: "relu", dropout: 0.5 });
  const params = [conv.weight, conv.bias!, bn.weight, bn.bias];
  resetDropoutStream(3);
  const fused = await forwardBackward((x) => m.forward(x), params);
  resetDropoutStream(3);
  const drop = new Dropout2d(0.5);
  const plain = await forwardBackward(
    (x) =>
      drop.forward(relu(batchNorm2d(conv.forward(x), {
        weight: bn.weight,
        bias: bn.bias,
        training: true,
      }))),
    params,
  );
  assertClose(fused.y, plain.y, { what: "output" });
  fused.grads.forEach((g, i) =>
    assertClose(g, plain.grads[i], { atol: 1e-4, rtol: 1e-3, what: `gradient ${i}` })
  );
  // Each channel of each image is dropped (all zero) or the reference scaled by 1/(1 − p).
  const x = randArray(X_SHAPE.reduce((a, b) => a * b), 11);
  const c = refConv(
    x,
    X_SHAPE,
    await host(conv.weight),
    conv.weight.shape,
    await host(conv.bias!),
    {
      stride: 2,
      padding: 1,
      groups: 1,
    },
  );
  const gamma = await host(bn.weight), beta = await host(bn.bias);
  const want = refAct(refNorm(c.y, c.shape, { perPlane: false, gamma, beta }), "relu");
  const plane = c.shape[2] * c.shape[3];
  let dropped = 0, kept = 0;
  for (let p = 0; p < c.shape[0] * c.shape[1]; p++) {
    const got = fused.y.subarray(p * plane, (p + 1) * plane);
    const ref = want.subarray(p * plane, (p + 1) * plane);
    if (got.every((v) => v === 0) && ref.some((v) => v > 1e-3)) dropped++;
    else {
      assertClose(got, ref.map((v) => 2 * v), { atol: 1e-4, what: `plane ${p}` });
      kept++;
    }
  }
  assert.ok(
    dropped > 0 && kept > 0,
    `dropped ${dropped}, kept ${kept}: the mask was not exercised`,
  );
});

Deno.test("ConvBnAct training, BN → SiLU fused: equals the float64 reference, and op-by-op gradients", async () => {
  const conv = new Conv2d(4, 6, { kernel: 3, padding: 1, groups: 2, bias: false }, new Random(4));
  const bn = bnWithStats(6, 30);
  const m = new ConvBnAct({ conv: ["0", conv], bn: ["1", bn], act: "silu" });
  const params = [conv.weight, bn.weight, bn.bias];
  const fused = await forwardBackward((x) => m.forward(x), params);
  const plain = await forwardBackward(
    (x) => silu(batchNorm2d(conv.forward(x), { weight: bn.weight, bias: bn.bias, training: true })),
    params,
  );
  const x = randArray(X_SHAPE.reduce((a, b) => a * b), 11);
  const c = refConv(x, X_SHAPE, await host(conv.weight), conv.weight.shape, null, {
    stride: 1,
    padding: 1,
    groups: 2,
  });
  const gamma = await host(bn.weight), beta = await host(bn.bias);
  assertClose(fused.y, refAct(refNorm(c.y, c.shape, { perPlane: false, gamma, beta }), "silu"), {
    atol: 1e-4,
    what: "output vs float64",
  });
  fused.grads.forEach((g, i) =>
    assertClose(g, plain.grads[i], { atol: 1e-4, rtol: 1e-3, what: `gradient ${i}` })
  );
});

for (const act of ["relu", "silu", "none"] as const) {
  Deno.test(`ConvBnAct eval (${act}): the folded conv, the unfolded layers and the float64 reference agree`, async () => {
    const conv = conv3(4, 6, { stride: 2, groups: 2 }, 5);
    const bn = bnWithStats(6, 40);
    const m = new ConvBnAct({ conv: ["c", conv], bn: ["b", bn], act }).eval();
    const xData = randArray(X_SHAPE.reduce((a, b) => a * b), 13);
    const x = tensor(xData, X_SHAPE);
    const before = stats.dispatches;
    // Inference folds (no tape); a forward with gradients runs the layers, whose parameters
    // then get gradients (the fold is not differentiable).
    const folded = scope(() => noGrad(() => m.forward(x)));
    const foldedDispatches = stats.dispatches - before;
    const taped = scope(() => m.forward(x));
    m.foldInEval = false;
    const unfolded = scope(() => m.forward(x));
    const c = refConv(
      xData,
      X_SHAPE,
      await host(conv.weight),
      conv.weight.shape,
      await host(conv.bias!),
      {
        stride: 2,
        padding: 1,
        groups: 2,
      },
    );
    const gamma = await host(bn.weight), beta = await host(bn.bias);
    const st = { mean: await host(bn.runningMean), variance: await host(bn.runningVar) };
    const want = refAct(refNorm(c.y, c.shape, { perPlane: false, gamma, beta }, st), act);
    assertClose(await host(folded), want, { atol: 1e-5, rtol: 1e-4, what: "folded" });
    assertClose(await host(unfolded), want, { atol: 1e-5, rtol: 1e-4, what: "unfolded" });
    assertClose(await host(taped), want, { atol: 1e-5, rtol: 1e-4, what: "eval with a tape" });
    assert.ok(taped.node, "an eval forward with gradients is on the tape");
    // Folded: the fold and one conv (its write-out doing the BN and the activation).
    assert.equal(foldedDispatches <= 3, true, `folded eval took ${foldedDispatches} dispatches`);
    for (const t of [x, folded, unfolded, taped]) t.dispose();
  });
}

Deno.test("ConvBnAct eval with a transposed conv (FC-Siam's decoder): folded equals the float64 reference", async () => {
  const conv = new ConvTranspose2d(4, 3, { kernel: 3, padding: 1 }, new Random(6));
  const bn = bnWithStats(3, 50);
  const m = new ConvBnAct({ conv: ["c", conv], bn: ["b", bn], act: "relu", dropout: 0.2 }).eval();
  const xData = randArray(X_SHAPE.reduce((a, b) => a * b), 14);
  const x = tensor(xData, X_SHAPE);
  const folded = scope(() => noGrad(() => m.forward(x)));
  const c = refConvT(
    xData,
    X_SHAPE,
    await host(conv.weight),
    conv.weight.shape,
    await host(conv.bias!),
    1,
  );
  const gamma = await host(bn.weight), beta = await host(bn.bias);
  const st = { mean: await host(bn.runningMean), variance: await host(bn.runningVar) };
  const want = refAct(refNorm(c.y, c.shape, { perPlane: false, gamma, beta }, st), "relu");
  assertClose(await host(folded), want, { atol: 1e-5, rtol: 1e-4, what: "folded" });
  x.dispose();
  folded.dispose();
});

Deno.test("ConvBnAct without BN (TinyCD): PReLU in the conv's write-out, then InstanceNorm, equals the float64 reference and op-by-op gradients, training and eval alike", async () => {
  const conv = conv3(4, 4, { groups: 4 }, 7);
  const act = new PReLU();
  write(act.weight, [0.3]);
  const m = new ConvBnAct({
    conv: ["0", conv],
    act: ["1", act],
    normAfter: ["2", new InstanceNorm2d(4)],
  });
  const params = [conv.weight, conv.bias!, act.weight];
  const fused = await forwardBackward((x) => m.forward(x), params);
  const plain = await forwardBackward(
    (x) =>
      instanceNorm2d(
        prelu(conv2d(x, conv.weight, { bias: conv.bias, padding: 1, groups: 4 }), act.weight),
      ),
    params,
  );
  fused.grads.forEach((g, i) =>
    assertClose(g, plain.grads[i], { atol: 1e-4, rtol: 1e-3, what: `gradient ${i}` })
  );
  const xData = randArray(X_SHAPE.reduce((a, b) => a * b), 11);
  const c = refConv(
    xData,
    X_SHAPE,
    await host(conv.weight),
    conv.weight.shape,
    await host(conv.bias!),
    {
      stride: 1,
      padding: 1,
      groups: 4,
    },
  );
  const want = refNorm(refAct(c.y, "prelu", 0.3), c.shape, { perPlane: true });
  assertClose(fused.y, want, { atol: 1e-4, what: "training output" });
  m.eval();
  const x = tensor(xData, X_SHAPE);
  const y = scope(() => m.forward(x));
  assertClose(await host(y), want, { atol: 1e-4, what: "eval output" });
  x.dispose();
  y.dispose();
});

const gradCases: [string, () => ConvBnActParts][] = [
  ["BN → ReLU → Dropout2d", () => ({
    conv: ["c", conv3(4, 3, { stride: 2 }, 8)],
    bn: ["b", bnWithStats(3, 60)],
    act: "relu",
    dropout: 0.3,
  })],
  [
    "BN → SiLU",
    () => ({ conv: ["c", conv3(4, 3, {}, 9)], bn: ["b", bnWithStats(3, 70)], act: "silu" }),
  ],
  ["PReLU → InstanceNorm", () => ({
    conv: ["c", conv3(4, 3, {}, 10)],
    act: ["a", new PReLU()],
    normAfter: ["n", new InstanceNorm2d(3)],
  })],
];
for (const [name, parts] of gradCases) {
  Deno.test(`ConvBnAct training (${name}): input gradient matches finite differences`, async () => {
    const m = new ConvBnAct(parts());
    // Every evaluation draws the same dropout mask; a small step rarely crosses a ReLU/PReLU kink.
    await gradCheck(
      (x) => {
        resetDropoutStream(5);
        return m.forward(x);
      },
      [{ data: randArray(2 * 4 * 5 * 5, 15), shape: [2, 4, 5, 5] }],
      { eps: 1e-3, atol: 3e-3, rtol: 3e-2 },
    );
    m.dispose();
  });
}

// A BatchNorm in training subtracts each channel's batch mean, so the conv's bias cannot change
// the loss: ConvBnAct hands it an exact zero instead of summing dy (forwardBeforeBatchNorm). The
// cases take each route a conv before a BN can take: Winograd 3×3, a strided GEMM, a 1×1, a
// transposed conv, and a conv of concatenation parts.
const cancelCases: [string, () => { conv: Conv2d | ConvTranspose2d; parts?: boolean }][] = [
  ["3×3", () => ({ conv: conv3(4, 6, {}, 21) })],
  ["3×3 stride 2", () => ({ conv: conv3(4, 6, { stride: 2 }, 22) })],
  ["1×1", () => ({ conv: new Conv2d(4, 6, { kernel: 1 }, new Random(23)) })],
  ["transposed 2×2 stride 2", () => ({
    conv: new ConvTranspose2d(4, 6, { kernel: 2, stride: 2 }, new Random(24)),
  })],
  ["3×3 of parts", () => ({ conv: conv3(8, 6, {}, 25), parts: true })],
];
for (const [name, make] of cancelCases) {
  Deno.test(`ConvBnAct training (${name}): the BatchNorm cancels the conv's bias, whose gradient is an exact zero made without summing dy`, async () => {
    const { conv, parts } = make();
    const bn = bnWithStats(6, 40);
    const m = new ConvBnAct({ conv: ["c", conv], bn: ["b", bn], act: "relu" });
    const other = parts ? tensor(randArray(X_SHAPE.reduce((a, b) => a * b), 13), X_SHAPE) : null;
    const input = (x: Tensor) => (other ? [x, other] : x);
    const params = [conv.weight, conv.bias!, bn.weight, bn.bias];
    const sums = (f: () => Promise<{ y: Float32Array; grads: Float32Array[] }>) => async () => {
      let n = 0;
      const prev = setDispatchTap((label) => void (label.startsWith("reduce_sum") && n++));
      try {
        return { ...(await f()), reduceSums: n };
      } finally {
        setDispatchTap(prev);
      }
    };
    const fused = await sums(() => forwardBackward((x) => m.forward(input(x)), params))();
    const plain = await sums(() =>
      forwardBackward((x) => {
        const y = other ? conv.forwardConcat([x, other]) : conv.forward(x);
        return relu(batchNorm2d(y, { weight: bn.weight, bias: bn.bias, training: true }));
      }, params)
    )();
    const [gx, gw, gb, ...rest] = fused.grads, [px, pw, pb, ...prest] = plain.grads;
    assert.ok(gb.every((v) => v === 0), `bias gradient ${gb}: not exactly zero`);
    // Summed, it is rounding noise: zero to a small fraction of the weight's gradient.
    const scale = Math.max(...pw.map(Math.abs));
    assertClose(pb, new Float32Array(pb.length), { atol: 1e-4 * scale, what: "summed bias grad" });
    // The loss's sum is the one reduction left (op by op, routes without a bias column in their
    // weight-gradient kernel sum dy apart: a second one).
    assert.equal(fused.reduceSums, 1, `${fused.reduceSums} reduce_sum dispatches`);
    assertClose(fused.y, plain.y, { what: "output" });
    for (
      const [i, [a, b]] of [[gx, px], [gw, pw], ...rest.map((g, j) => [g, prest[j]])].entries()
    ) {
      assertClose(a, b, { atol: 1e-4, rtol: 1e-3, what: `gradient ${i}` });
    }
    other?.dispose();
    m.dispose();
  });
}

class Parent extends Module {
  readonly flat: ConvBnAct;
  readonly nested: ConvBnAct;
  constructor() {
    super();
    const rng = new Random(1);
    this.flat = this.inline(
      new ConvBnAct({
        conv: ["conv11", new Conv2d(3, 4, { kernel: 3 }, rng)],
        bn: ["bn11", new BatchNorm2d(4)],
        act: "relu",
        dropout: 0.2,
      }),
    );
    this.nested = this.child(
      "block",
      new ConvBnAct({ conv: ["0", new Conv2d(4, 4, { kernel: 1 }, rng)], act: ["1", new PReLU()] }),
    );
  }
}

Deno.test("ConvBnAct adds no level to names, its dropout follows train()/eval(), and bad combinations are refused", () => {
  const p = new Parent();
  assert.deepEqual([...p.stateDict().keys()], [
    "conv11.weight",
    "conv11.bias",
    "bn11.weight",
    "bn11.bias",
    "block.0.weight",
    "block.0.bias",
    "block.1.weight",
    "bn11.running_mean",
    "bn11.running_var",
    "bn11.num_batches_tracked",
  ]);
  assert.equal(p.flat.dropout!.training, true);
  p.eval();
  assert.equal(p.flat.dropout!.training, false);
  assert.equal(p.flat.bn!.training, false);
  p.train();
  assert.equal(p.flat.dropout!.training, true);
  p.dispose();
  const rng = new Random(2);
  assert.throws(
    () =>
      new ConvBnAct({
        conv: ["c", new Conv2d(2, 2, { kernel: 1 }, rng)],
        act: "relu",
        dropout: 0.1,
      }),
    /Dropout2d/,
  );
  assert.throws(
    () =>
      new ConvBnAct({
        conv: ["c", new Conv2d(2, 2, { kernel: 1 }, rng)],
        bn: ["b", new BatchNorm2d(2)],
        act: ["a", new PReLU()],
      }),
    /PReLU/,
  );
});

Deno.test("ConvBnAct eval with a tape: not folded, so the conv and the BN get gradients", () => {
  const conv = conv3(4, 6, {}, 5);
  const bn = bnWithStats(6, 40);
  const m = new ConvBnAct({ conv: ["c", conv], bn: ["b", bn], act: "relu" }).eval();
  const x = tensor(randArray(X_SHAPE.reduce((a, b) => a * b), 13), X_SHAPE);
  scope(() => backward(sum(m.forward(x))));
  for (const p of [conv.weight, bn.weight, bn.bias]) {
    assert.ok(p.grad, `${p.name} got no gradient`);
    p.grad.dispose();
    p.grad = null;
  }
  x.dispose();
});
