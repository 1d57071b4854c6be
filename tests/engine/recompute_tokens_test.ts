// Recipes of the token ops (Tensor.evict): LayerNorm over tokens, matmul (a Linear, with or
// without its fused ReLU), permute and interpolate write again exactly what they wrote, and a
// transformer block that evicts its LayerNorm outputs, split and merged heads, hidden ReLU
// output and branch outputs (models/bit.ts, models/mit.ts) gives the keep path's gradients bit
// for bit, writing again only what a backward rule reads.

import assert from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { Linear } from "../../engine/nn/linear.ts";
import { attention } from "../../engine/ops/attention.ts";
import { add, mul } from "../../engine/ops/elementwise.ts";
import { layerNorm } from "../../engine/ops/layer_norm.ts";
import { permute } from "../../engine/ops/layout.ts";
import { matmul } from "../../engine/ops/matmul.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { interpolate } from "../../engine/ops/resample.ts";
import { reshape } from "../../engine/ops/shape.ts";
import { pool } from "../../engine/pool.ts";
import { Random } from "../../engine/random.ts";
import { flush } from "../../engine/recorder.ts";
import { scopeAsync } from "../../engine/scope.ts";
import { parameter, setEviction, type Tensor, tensor } from "../../engine/tensor.ts";
import { evictStep } from "./recompute_step.ts";
import { gradCheck, initDevice, randArray } from "../util.ts";

await initDevice();

Deno.test("recipes write again exactly what the op wrote: layer norm, matmul (bias, ReLU, batched), permute, interpolate", async () => {
  // One async scope: the recipes read inputs that live as long as the outputs' rules do.
  await scopeAsync(async () => {
    const x = parameter(randArray(2 * 37 * 24, 41), [2, 37, 24], "x");
    const w = parameter(randArray(24, 42), [24], "w"), b = parameter(randArray(24, 43), [24], "b");
    const lin = parameter(randArray(40 * 24, 44), [40, 24], "lin");
    const bias = parameter(randArray(40, 45), [40], "bias");
    const img = parameter(randArray(2 * 3 * 5 * 7, 46), [2, 3, 5, 7], "img");
    const outs: [string, Tensor][] = [
      ["layer_norm", layerNorm(x, { weight: w, bias: b, eps: 1e-6 })],
      ["layer_norm (no affine)", layerNorm(x)],
      ["matmul", matmul(x, lin, { transB: true })],
      ["matmul + bias + ReLU", matmul(x, lin, { transB: true, bias, activation: "relu" })],
      ["batched matmul", matmul(x, permute(x, [0, 2, 1]))],
      ["permute (tiled transpose)", permute(x, [0, 2, 1])],
      ["permute (heads)", permute(reshape(x, [2, 37, 4, 6]), [0, 2, 1, 3])],
      ["interpolate bilinear", interpolate(img, { size: [11, 9], mode: "bilinear" })],
      ["interpolate nearest", interpolate(img, { scale: 2, mode: "nearest" })],
    ];
    for (const [what, t] of outs) {
      const first = Array.from(await t.read());
      assert.ok(t.evict(), `${what} has a recipe`);
      // Other work in between, on poisoned buffers: the recompute must write all of it again.
      flush();
      pool.poisonFree(NaN);
      assert.deepEqual(Array.from(await t.read()), first, `${what} written again`);
    }
    for (const t of [x, w, b, lin, bias, img]) t.kept = false;
  });
});

Deno.test("layer norm's recipe agrees with a float64 layer norm and leaves the saved statistics as they were", async () => {
  const [rows, len] = [23, 32];
  const xs = randArray(rows * len, 51, -3, 3), ws = randArray(len, 52), bs = randArray(len, 53);
  await scopeAsync(async () => {
    const x = parameter(xs, [rows, len], "x");
    const y = layerNorm(x, { weight: tensor(ws), bias: tensor(bs), eps: 1e-5 });
    y.evict();
    flush();
    pool.poisonFree(NaN);
    const got = await y.read();
    for (let r = 0; r < rows; r++) {
      let m = 0, v = 0;
      for (let c = 0; c < len; c++) m += xs[r * len + c] / len;
      for (let c = 0; c < len; c++) v += (xs[r * len + c] - m) ** 2 / len;
      for (let c = 0; c < len; c++) {
        const want = (xs[r * len + c] - m) / Math.sqrt(v + 1e-5) * ws[c] + bs[c];
        assert.ok(Math.abs(got[r * len + c] - want) <= 1e-5 + 1e-5 * Math.abs(want));
      }
    }
    // The backward after the recompute still reads the first write's statistics: the input's
    // gradient equals the keep path's.
    const r = tensor(randArray(rows * len, 54), [rows, len]);
    backward(sum(mul(y, r)));
    const evicted = Array.from(await x.grad!.read());
    x.grad = null;
    setEviction(false);
    try {
      backward(sum(mul(layerNorm(x, { weight: tensor(ws), bias: tensor(bs), eps: 1e-5 }), r)));
    } finally {
      setEviction(true);
    }
    assert.deepEqual(evicted, Array.from(await x.grad!.read()));
    x.kept = false;
  });
});

/** A block of BIT's form on [N, L, C] tokens (models/bit.ts TransformerBlock): pre-norm
 * self-attention with split and merged heads, then a pre-norm Linear → ReLU → Linear; each
 * intermediate evicted as the model does. */
function blockNet() {
  const rng = new Random(17);
  const [c, hidden, heads] = [16, 32, 4];
  const ln = () => ({ w: parameter(randArray(c, 61), [c]), b: parameter(randArray(c, 62), [c]) });
  const n1 = ln(), n2 = ln();
  const toQ = new Linear(c, c, rng, false), toK = new Linear(c, c, rng, false);
  const toV = new Linear(c, c, rng, false), out = new Linear(c, c, rng);
  const fc1 = new Linear(c, hidden, rng), fc2 = new Linear(hidden, c, rng);
  const params = [n1.w, n1.b, n2.w, n2.b];
  for (const l of [toQ, toK, toV, out, fc1, fc2]) params.push(...l.parameters());
  const split = (t: Tensor) => {
    const [n, l] = t.shape;
    const s = permute(reshape(t, [n, l, heads, c / heads]), [0, 2, 1, 3]);
    t.evict();
    return s;
  };
  const forward = (x: Tensor) => {
    const [n, l] = x.shape;
    const q = layerNorm(x, { weight: n1.w, bias: n1.b });
    const o = permute(
      attention(split(toQ.forward(q)), split(toK.forward(q)), split(toV.forward(q))),
      [0, 2, 1, 3],
    );
    q.evict();
    const attended = out.forward(reshape(o, [n, l, c]));
    o.evict();
    const x1 = add(attended, x);
    attended.evict();
    const normed = layerNorm(x1, { weight: n2.w, bias: n2.b });
    const h = fc1.forward(normed, "relu");
    const f = fc2.forward(h);
    for (const t of [normed, h]) t.evict();
    const y = add(f, x1);
    f.evict();
    return y;
  };
  return { params, forward };
}

const X_SHAPE = [2, 9, 16];

const blockStep = (evict: boolean, net = blockNet()) =>
  evictStep(evict, net.forward, net.params, X_SHAPE, 71);

Deno.test("a transformer block evicting its norms, heads, hidden ReLU output and branch outputs: the keep path's gradients bit for bit", async () => {
  const net = blockNet();
  const kept = await blockStep(false, net);
  const evicted = await blockStep(true, net);
  assert.deepEqual(kept.counts, { evictions: 0, recomputes: 0, bytes: 0 });
  // Evicted: 3 projections before the head split, LN1's output, the merged heads, the
  // attention branch, LN2's output, the hidden ReLU output, the FFN branch (9). Written again:
  // LN1's output (for the projections' weight gradients), the merged heads (out's), LN2's output
  // and the hidden output (fc2's and the ReLU's rule) — the projections and branches never.
  const tokens = 4 * X_SHAPE.reduce((a, b) => a * b);
  assert.deepEqual(evicted.counts, { evictions: 9, recomputes: 4, bytes: tokens * 5 });
  evicted.grads.forEach((g, i) => assert.deepEqual(g, kept.grads[i], `gradient ${i}`));
});

Deno.test("a transformer block with eviction passes the finite-difference gradient check", async () => {
  const { forward } = blockNet();
  await gradCheck(forward, [{
    data: randArray(X_SHAPE.reduce((a, b) => a * b), 73),
    shape: X_SHAPE,
  }]);
});
