// Eviction and recompute (Tensor.evict): an intermediate let go after its forward uses is
// written again by its op when a backward rule reads it, so the gradients are the keep path's
// bit for bit (same kernels on the same inputs), BatchNorm's running statistics move once
// per step (the recompute is the apply pass, not the statistics), an in-place write drops the
// recipe, and what has no recipe stays.

import assert from "node:assert/strict";
import { accumulate, noGrad } from "../../engine/autograd.ts";
import { Conv2d } from "../../engine/nn/conv.ts";
import { ConvBnAct } from "../../engine/nn/conv_bn_act.ts";
import type { Layer } from "../../engine/nn/module.ts";
import { BatchNorm2d } from "../../engine/nn/norm.ts";
import { dropPath } from "../../engine/ops/dropout.ts";
import { add, mul, relu, sigmoid } from "../../engine/ops/elementwise.ts";
import { concat } from "../../engine/ops/layout.ts";
import { batchNorm2d, instanceNorm2d } from "../../engine/ops/norm.ts";
import { convTranspose2d } from "../../engine/ops/conv_transpose2d.ts";
import { convTransposeGeometry } from "../../kernels/conv_transpose2d.ts";
import { planOp } from "../../kernels/conv_plan.ts";
import { absDiff } from "../../engine/ops/layout.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { pool } from "../../engine/pool.ts";
import { flush } from "../../engine/recorder.ts";
import { Random } from "../../engine/random.ts";
import { scope, scopeAsync } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor, view, write } from "../../engine/tensor.ts";
import { evictStep } from "./recompute_step.ts";
import { gradCheck, initDevice, randArray } from "../util.ts";

await initDevice();

const X_SHAPE = [2, 4, 9, 7];

/** conv → BN → SiLU (running statistics from 0 and 1), then a squeeze-excitation style product
 * with a learnt per-channel gate, then a 3×3 conv: each intermediate is read by a backward rule
 * (the product's factor by its gate gradient, the conv's input by its weight gradient). */
function build() {
  const rng = new Random(5);
  const conv1 = new Conv2d(4, 6, { kernel: 3, padding: 1, bias: false }, rng);
  const bn = new BatchNorm2d(6);
  const cba = new ConvBnAct({ conv: ["0", conv1], bn: ["1", bn], act: "silu" });
  const gate = parameter(randArray(6, 8), [1, 6, 1, 1], "gate");
  const conv2 = new Conv2d(6, 5, { kernel: 3, padding: 1 }, rng);
  const layers: Layer[] = [
    cba,
    { forward: (x) => mul(x, sigmoid(gate)) },
    { forward: (x) => conv2.forward(x, "relu") },
  ];
  const params = [conv1.weight, bn.weight, bn.bias, gate, conv2.weight, conv2.bias!];
  return { conv1, bn, layers, params };
}

/** One training step's gradients (input and parameters) and the running statistics after it,
 * from fresh running statistics; the pool's free buffers poisoned first, so a recompute that
 * left part of its output unwritten would show. */
/** x through each layer in turn, each intermediate evicted once the next layer has read it. */
function chain(layers: Layer[], x: Tensor): Tensor {
  let y = x;
  for (const l of layers) {
    const next = l.forward(y);
    if (y !== x) y.evict();
    y = next;
  }
  return y;
}

async function step(evict: boolean, net = build()) {
  const { bn, layers, params } = net;
  write(bn.runningMean, new Float32Array(6));
  write(bn.runningVar, new Float32Array(6).fill(1));
  const { grads, counts: { evictions, recomputes } } = await evictStep(
    evict,
    (x) => chain(layers, x),
    params,
    X_SHAPE,
    11,
  );
  const running = [Array.from(await bn.runningMean.read()), Array.from(await bn.runningVar.read())];
  return { grads, running, counts: { evictions, recomputes } };
}

Deno.test("evicted BN + SiLU output and SE product: the keep path's gradients and running statistics, bit for bit", async () => {
  const net = build();
  const kept = await step(false, net);
  const evicted = await step(true, net);
  assert.deepEqual(kept.counts, { evictions: 0, recomputes: 0 });
  // Both intermediates let go; both written again (the product's recompute reads the BN output,
  // which comes back first and stays for the gate's gradient).
  assert.deepEqual(evicted.counts, { evictions: 2, recomputes: 2 });
  evicted.grads.forEach((g, i) => assert.deepEqual(g, kept.grads[i], `gradient ${i}`));
  assert.deepEqual(evicted.running, kept.running);
});

Deno.test("BatchNorm's running statistics move once per step with eviction: 0.9·old + 0.1·batch mean", async () => {
  const net = build();
  const { running } = await step(true, net);
  // The batch mean of the conv output, in float64 from the conv's own output.
  const z = scope(() =>
    noGrad(() => net.conv1.forward(tensor(randArray(X_SHAPE.reduce((a, b) => a * b), 11), X_SHAPE)))
  );
  const zs = await z.read();
  const plane = zs.length / (X_SHAPE[0] * 6);
  for (let c = 0; c < 6; c++) {
    let s = 0;
    for (let n = 0; n < X_SHAPE[0]; n++) {
      for (let i = 0; i < plane; i++) s += zs[(n * 6 + c) * plane + i];
    }
    const once = 0.1 * s / (X_SHAPE[0] * plane);
    assert.ok(
      Math.abs(running[0][c] - once) <= 1e-6 + 1e-5 * Math.abs(once),
      `channel ${c}: running mean ${running[0][c]}, one update gives ${once}`,
    );
  }
  z.dispose();
});

Deno.test("a chain with eviction passes the finite-difference gradient check", async () => {
  const { layers } = build();
  await gradCheck(
    (x) => chain(layers, x),
    [{ data: randArray(X_SHAPE.reduce((a, b) => a * b), 3), shape: X_SHAPE }],
  );
});

Deno.test("evict: only op outputs with a recipe go, a read brings them back, an upload or in-place write drops the recipe", async () => {
  const a = parameter(randArray(8, 1), [8], "a"), b = parameter(randArray(8, 2), [8], "b");
  const av = await a.read(), bv = await b.read();
  const product = Array.from(av, (v, i) => Math.fround(v * bv[i]));
  const q = scope(() => {
    const p = mul(a, b);
    assert.ok(p.evict(), "a recorded product can be evicted");
    assert.ok(p.storage.evicted && !p.evict(), "evicted once");
    // A view shares the storage, and so the eviction.
    assert.ok(view(p, [2, 4]).storage.evicted);
    // A leaf, a reduction and a product made without a tape have no recipe.
    assert.ok(!a.evict() && !sum(a).evict() && !noGrad(() => mul(a, b)).evict());
    return p;
  });
  // Read back: written again from a and b.
  assert.deepEqual(Array.from(await q.read()), product);
  assert.ok(!q.storage.evicted);
  write(q, new Float32Array(8).fill(3));
  assert.ok(!q.evict(), "uploaded: no longer what mul would write");
  assert.deepEqual(Array.from(await q.read()), new Array(8).fill(3));
  q.dispose();
  const r = scope(() => {
    const p = mul(a, b);
    p.evict();
    // An in-place write (the accumulation autograd uses) of an evicted tensor: written again
    // first, then added to, and kept from then on.
    p.grad = null;
    accumulate(p, tensor(new Float32Array(8).fill(1)));
    assert.ok(!p.evict(), "written in place: the recipe is gone");
    return p;
  });
  assert.deepEqual(Array.from(await r.read()), product.map((v) => Math.fround(v + 1)));
  r.dispose();
  for (const t of [a, b]) t.dispose();
});

Deno.test("recipes write again exactly what the op wrote: concat, add, BN → ReLU → Dropout2d, drop path, instance norm", async () => {
  // One async scope: the BN's recipe reads the batch statistics it saved, which live as long as
  // its backward rule does (the step's scope).
  await scopeAsync(async () => {
    const x = parameter(randArray(X_SHAPE.reduce((a, b) => a * b), 21), X_SHAPE, "x");
    const w = parameter(randArray(4, 22), [4], "w"), bias = parameter(randArray(4, 23), [4], "b");
    const outs = [
      concat([x, instanceNorm2d(x), x], 1),
      add(x, view(w, [1, 4, 1, 1])),
      batchNorm2d(x, {
        weight: w,
        bias,
        training: true,
        post: { dropout: { p: 0.4, training: true, seed: 7 } },
      }),
      dropPath(x, 0.5, { training: true, seed: 9 }),
      instanceNorm2d(x),
    ];
    for (const [i, t] of outs.entries()) {
      const first = Array.from(await t.read());
      assert.ok(t.evict(), `output ${i} has a recipe`);
      // Other work in between, on poisoned buffers: the recompute must write all of it again.
      flush();
      pool.poisonFree(NaN);
      assert.deepEqual(Array.from(await t.read()), first, `output ${i} written again`);
    }
    for (const t of [x, w, bias]) t.kept = false;
  });
});

/** SNUNet's pattern (models/snunet.ts): a concat that only a conv reads (its weight gradient
 * does), of a node output, a branch and an input off the tape; then a residual sum under a
 * ReLU. Both evicted after their forward reader: the concat is written again once (for the
 * conv's weight gradient), the sum never (ReLU's rule reads its output). */
function concatNet() {
  const rng = new Random(9);
  const convA = new Conv2d(4, 3, { kernel: 3, padding: 1 }, rng);
  const convB = new Conv2d(4, 2, { kernel: 1 }, rng);
  const convC = new Conv2d(3 + 2 + 4, 5, { kernel: 3, padding: 1 }, rng);
  const convD = new Conv2d(4, 5, { kernel: 1, bias: false }, rng);
  const params = [convA.weight, convA.bias!, convB.weight, convB.bias!, convC.weight];
  params.push(convC.bias!, convD.weight);
  // Off the tape (no gradient): kept by its owner, as a model keeps such an input.
  const off = tensor(randArray(X_SHAPE.reduce((a, b) => a * b), 34), X_SHAPE).keep();
  const forward = (x: Tensor) => {
    const a = relu(convA.forward(x));
    const joined = concat([a, convB.forward(x), off], 1);
    const y = convC.forward(joined);
    joined.evict();
    const s = add(y, convD.forward(x));
    const out = relu(s);
    s.evict();
    return out;
  };
  return { params, forward, off };
}

const concatStep = (evict: boolean, net = concatNet()) =>
  evictStep(evict, net.forward, net.params, X_SHAPE, 31);

Deno.test("evicted concat (written again for a conv's weight gradient) and residual sum under a ReLU (never): the keep path's gradients bit for bit", async () => {
  const net = concatNet();
  const kept = await concatStep(false, net);
  const evicted = await concatStep(true, net);
  assert.deepEqual(kept.counts, { evictions: 0, recomputes: 0, bytes: 0 });
  const joinedBytes = 4 * X_SHAPE[0] * (3 + 2 + 4) * X_SHAPE[2] * X_SHAPE[3];
  assert.deepEqual(evicted.counts, { evictions: 2, recomputes: 1, bytes: joinedBytes });
  evicted.grads.forEach((g, i) => assert.deepEqual(g, kept.grads[i], `gradient ${i}`));
});

Deno.test("a concat and a sum evicted in the forward pass the finite-difference gradient check", async () => {
  const { forward } = concatNet();
  await gradCheck(forward, [{
    data: randArray(X_SHAPE.reduce((a, b) => a * b), 33),
    shape: X_SHAPE,
  }]);
});

Deno.test("recipes of outputs no rule reads: a transposed conv's (its launches again, copied in) and |a − b|'s, written again as the op wrote them", async () => {
  await scopeAsync(async () => {
    const x = parameter(randArray(2 * 24 * 5 * 6, 31), [2, 24, 5, 6], "x");
    const w = parameter(randArray(24 * 20 * 3 * 3, 32, -0.2, 0.2), [24, 20, 3, 3], "w");
    // k2 s2 from 64 channels each way: the GEMM + pixel-shuffle route.
    const x2 = parameter(randArray(64 * 3 * 2, 36), [1, 64, 3, 2], "x2");
    const w2 = parameter(randArray(64 * 64 * 2 * 2, 33, -0.1, 0.1), [64, 64, 2, 2], "w2");
    const bias = parameter(randArray(20, 34), [20], "bias");
    const y = parameter(randArray(2 * 24 * 5 * 6, 35), [2, 24, 5, 6], "y");
    const outs = [
      // FC-Siam's up-convolution (k3 s2, output padding 1).
      convTranspose2d(x, w, { bias, stride: 2, padding: 1, outputPadding: 1 }),
      convTranspose2d(x2, w2, { stride: 2 }),
      convTranspose2d(x, w, { bias, padding: 1, activation: "relu" }),
      absDiff(x, y),
    ];
    for (const [i, t] of outs.entries()) {
      const first = Array.from(await t.read());
      assert.ok(t.evict(), `output ${i} has a recipe`);
      flush();
      pool.poisonFree(NaN);
      assert.deepEqual(Array.from(await t.read()), first, `output ${i} written again`);
    }
    assert.equal(
      planOp({
        op: "convTranspose2d",
        g: convTransposeGeometry(x2.shape, w2.shape, { stride: 2 }),
        activation: "none",
        bias: false,
        recording: true,
      })?.kind,
      "shuffle-gemm",
    );
    for (const t of [x, x2, w, w2, bias, y]) t.kept = false;
  });
});
