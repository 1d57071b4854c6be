// Training-loop health: no GPU buffer leaks across steps, no submits inside a small step, the
// same buffers (so the same cached bind groups) step after step, and a small
// network actually learns with the fused AdamW.

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { backward, noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { add, mul, sigmoid, square, sub } from "../../engine/ops/elementwise.ts";
import { conv2d } from "../../engine/ops/conv2d.ts";
import { concat } from "../../engine/ops/layout.ts";
import { matmul } from "../../engine/ops/matmul.ts";
import { maxPool2d } from "../../engine/ops/pool.ts";
import { mean, sum } from "../../engine/ops/reduce.ts";
import { AdamW } from "../../engine/optim/adamw.ts";
import { pool } from "../../engine/pool.ts";
import { AUTO_FLUSH, stats } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { randArray } from "../util.ts";

await initDevice();

// Odd sizes on purpose: batch 33, 5 features, 17 hidden units.
const B = 33, D = 5, H = 17;

/** A 2-layer MLP in PyTorch's Linear layout: y = W2·relu(W1·x + b1) + b2, bias and ReLU fused
 * into the matmul write-out. */
function mlp(x: Tensor, [w1, b1, w2, b2]: Tensor[]): Tensor {
  const h = matmul(x, w1, { transB: true, bias: b1, activation: "relu" }); // [B, H]
  return matmul(h, w2, { transB: true, bias: b2 }); // [B, 1]
}

function mlpParams(seed: number, scale = 0.5): Tensor[] {
  return [
    parameter(randArray(H * D, seed, -scale, scale), [H, D], "w1"),
    parameter(randArray(H, seed + 1, -scale, scale), [H], "b1"),
    parameter(randArray(H, seed + 2, -scale, scale), [1, H], "w2"),
    parameter(randArray(1, seed + 3, -scale, scale), [1], "b2"),
  ];
}

Deno.test("live GPU buffers stay flat over 100 training steps, with no submit inside a step", async () => {
  const x = tensor(randArray(B * D, 1), [B, 1, D]);
  const target = tensor(randArray(B, 2, 0.1, 0.9), [B]);
  const w = parameter(randArray(D, 3), [1, 1, D], "w");
  const b = parameter([0.1], [1], "b");
  const opt = new AdamW([w, b], { lr: 0.05 });
  const liveAt: number[] = [];
  const heldAt: number[] = [];
  let reads = 0;
  const submits0 = stats.submits, dispatches0 = stats.dispatches;
  let groupsAfterWarmup = 0;
  for (let step = 0; step < 100; step++) {
    const loss = scope(() => {
      opt.zeroGrad();
      const y = sigmoid(add(sum(mul(x, w), [1, 2]), b));
      const l = mean(square(sub(y, target)));
      backward(l);
      opt.step();
      return l;
    });
    if (step % 10 === 9) {
      assert(Number.isFinite(await loss.item()));
      reads++;
    }
    loss.dispose();
    liveAt.push(pool.live);
    heldAt.push(pool.heldBytes);
    // AdamW's hyper-parameter ring has 16 slots, each bound once.
    if (step === 20) groupsAfterWarmup = stats.bindGroupsCreated;
  }
  assertEquals(liveAt.slice(1), new Array(99).fill(liveAt[0]), "live buffer count per step");
  assertEquals(heldAt.at(-1), heldAt[9], "the pool allocated nothing new after warm-up");
  const dispatches = stats.dispatches - dispatches0;
  assert(stats.submits - submits0 <= reads + Math.floor(dispatches / AUTO_FLUSH) + 1);
  assertEquals(stats.bindGroupsCreated, groupsAfterWarmup, "every later step reuses bind groups");
  opt.dispose();
  opt.arena.dispose();
  x.dispose();
  target.dispose();
});

Deno.test("a 2-layer matmul MLP learns a teacher network with AdamW; live buffers stay flat", async () => {
  const x = tensor(randArray(B * D, 10, -1.5, 1.5), [B, D]);
  const teacher = mlpParams(20, 1);
  const target = scope(() => noGrad(() => mlp(x, teacher)));
  for (const t of teacher) t.dispose();
  const params = mlpParams(30);
  const opt = new AdamW(params, { lr: 0.03, betas: [0.9, 0.99], weightDecay: 1e-4 });
  const lossAt: number[] = [];
  const liveAt: number[] = [];
  for (let step = 0; step < 150; step++) {
    const lr = 0.03 * Math.min(1, (step + 1) / 20); // short linear warm-up, as the recipe has
    const loss = scope(() => {
      opt.zeroGrad();
      const l = mean(square(sub(mlp(x, params), target)));
      backward(l);
      opt.step(lr);
      return l;
    });
    if (step === 0 || step % 50 === 49) lossAt.push(await loss.item());
    loss.dispose();
    liveAt.push(pool.live);
  }
  assertEquals(new Set(liveAt.slice(1)).size, 1, "live buffer count per step");
  const [first, last] = [lossAt[0], lossAt.at(-1)!];
  assert(last * 10 <= first, `loss went from ${first} to ${last}: ${lossAt.join(", ")}`);
  opt.dispose();
  opt.arena.dispose();
  x.dispose();
  target.dispose();
});

Deno.test("backward frees each gradient once used: peak holds the activations and a few gradients", async () => {
  const K = 12, N = 1 << 16, bytes = N * 4;
  const x = parameter(randArray(N, 3), [N]);
  const base = pool.liveBytes;
  pool.peakLiveBytes = base;
  scope(() => {
    let y = x;
    for (let k = 0; k < K; k++) y = sigmoid(y);
    // one gradient passed to two inputs (y + y) and summed, exercising the shared case
    backward(sum(add(y, y)));
  });
  const extra = pool.peakLiveBytes - base;
  // K activations, the sum's output, x's gradient and a couple of gradients in flight; keeping
  // every gradient to the end of the scope would need about 2K.
  assert(extra <= (K + 5) * bytes, `backward peak ${extra / bytes} tensors of ${K} activations`);
  // d/dx Σ 2·σ^K(x): check one element on the CPU in float64
  const g = await x.grad!.read();
  const xv = (await x.read())[7];
  let v = xv, d = 1;
  for (let k = 0; k < K; k++) {
    const s = 1 / (1 + Math.exp(-v));
    d *= s * (1 - s);
    v = s;
  }
  assert(Math.abs(g[7] - 2 * d) <= 1e-4 * 2 * d, `gradient ${g[7]} vs ${2 * d}`);
  x.dispose();
});

Deno.test("backward with freeActivations frees each op output once its readers have run", async () => {
  const K = 12, N = 1 << 16;
  const x = parameter(randArray(N, 4), [N]);
  const grads: Float32Array[] = [];
  for (const freeActivations of [false, true]) {
    x.grad?.dispose();
    x.grad = null;
    scope(() => {
      const ys: Tensor[] = [];
      let y = x;
      for (let k = 0; k < K; k++) ys.push(y = sigmoid(y));
      const root = sum(add(y, y));
      backward(root, undefined, { freeActivations });
      assert(!root.disposed, "the root survives");
      assertEquals(ys.filter((t) => t.disposed).length, freeActivations ? K : 0);
    });
    grads.push((await x.grad!.read()) as Float32Array);
  }
  assertEquals(grads[1], grads[0]);
  x.dispose();
});

Deno.test("freeActivations lets a concat or a sum go before its own rule, which never reads it", async () => {
  const x = parameter(randArray(64, 5), [4, 16]);
  const grads: Float32Array[] = [];
  for (const freeActivations of [false, true]) {
    x.grad?.dispose();
    x.grad = null;
    scope(() => {
      const joined = concat([sigmoid(x), x], 0);
      const s = add(joined, joined);
      const seen: boolean[] = [];
      // Each op's rule, when it runs: its own output already gone (with freeActivations).
      for (const t of [joined, s]) {
        const rule = t.node!.backward;
        t.node!.backward = (g, into) => (seen.push(t.disposed), rule(g, into));
      }
      backward(sum(mul(s, s)), undefined, { freeActivations });
      assertEquals(seen, [freeActivations, freeActivations]);
    });
    grads.push((await x.grad!.read()) as Float32Array);
  }
  assertEquals(grads[1], grads[0]);
  x.dispose();
});

Deno.test("freeActivations: an output its own rule never reads (conv without activation, concat, max pooling) goes before that rule, once the rules of the ops it fed have run; same gradients", async () => {
  const x = parameter(randArray(2 * 4 * 9 * 7, 5), [2, 4, 9, 7], "x");
  const w = parameter(randArray(6 * 4 * 3 * 3, 6, -0.3, 0.3), [6, 4, 3, 3], "w");
  const r = tensor(randArray(2 * 12 * 4 * 3, 7), [2, 12, 4, 3]).keep();
  const grads: Float32Array[][] = [];
  for (const freeActivations of [false, true]) {
    for (const p of [x, w]) {
      p.grad?.dispose();
      p.grad = null;
    }
    /** Whether each output was already gone when its own rule started. */
    const goneAtOwnRule = new Map<string, boolean>();
    scope(() => {
      const plain = conv2d(x, w, { padding: 1 });
      const relu = conv2d(x, w, { padding: 1, activation: "relu" });
      const joined = concat([plain, relu], 1);
      const pooled = maxPool2d(joined, { kernel: 2 });
      const named: [string, Tensor][] = [
        ["conv", plain],
        ["conv+relu", relu],
        ["concat", joined],
        ["max_pool", pooled],
      ];
      for (const [name, t] of named) {
        const node = t.node!, inner = node.backward;
        node.backward = (g, into) => {
          goneAtOwnRule.set(name, t.disposed);
          return inner(g, into);
        };
      }
      backward(sum(mul(pooled, r)), undefined, { freeActivations });
    });
    assertEquals(
      Object.fromEntries(goneAtOwnRule),
      freeActivations
        ? { "conv": true, "conv+relu": false, "concat": true, "max_pool": true }
        : { "conv": false, "conv+relu": false, "concat": false, "max_pool": false },
    );
    grads.push([await x.grad!.read(), await w.grad!.read()] as Float32Array[]);
  }
  assertEquals(grads[1], grads[0]);
  for (const t of [x, w, r]) t.dispose();
});
