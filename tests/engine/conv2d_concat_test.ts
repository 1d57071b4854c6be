// conv2dConcat: a conv of a channel concatenation without the joined tensor (Winograd F(4×4)
// routes read and write the parts' channel slabs) equals the float64 conv of the joined input,
// forward and every gradient; elsewhere it falls back to concat + conv2d.

import assert from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { conv2dConcat, convTranspose2dConcat } from "../../engine/ops/conv2d_concat.ts";
import { add, mul, mulScalar } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { setDispatchTap } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { convGeometry } from "../../kernels/conv2d.ts";
import { convTransposeGeometry } from "../../kernels/conv_transpose2d.ts";
import { planDgrad, planForward, planWgrad } from "../../kernels/conv_plan.ts";
import { activeProfile, type DeviceProfile, withProfile } from "../../kernels/device_profile.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";
import { convRef, dgradRef, wgradRef } from "./conv_ref.ts";

await initDevice();

/** The parts' values joined along channels (NCHW). */
function join(parts: Float32Array[], shapes: number[][]): Float32Array {
  const [b, , h, w] = shapes[0];
  const ci = shapes.reduce((a, s) => a + s[1], 0), hw = h * w;
  const out = new Float32Array(b * ci * hw);
  let c0 = 0;
  parts.forEach((p, k) => {
    const c = shapes[k][1];
    for (let n = 0; n < b; n++) {
      out.set(p.subarray(n * c * hw, (n + 1) * c * hw), (n * ci + c0) * hw);
    }
    c0 += c;
  });
  return out;
}

/** Channels [c0, c0 + c) of a joined [b, ci, hw] array. */
function slab(x: ArrayLike<number>, b: number, ci: number, hw: number, c0: number, c: number) {
  const out = new Float64Array(b * c * hw);
  for (let n = 0; n < b; n++) {
    for (let i = 0; i < c * hw; i++) out[n * c * hw + i] = x[(n * ci + c0) * hw + i];
  }
  return out;
}

/** conv2dConcat of three parts (5 + 7 + 6 = 18 channels → 16 at 9×11: partial tiles, padding
 * 1) with a bias: y and the gradients of every part, the weight and the bias against float64,
 * on the routes `kinds` (forward, input gradient, weight gradient) that `profile` plans. */
async function checkParts(profile: DeviceProfile, kinds: string[]) {
  const shapes = [[2, 5, 9, 11], [2, 7, 9, 11], [2, 6, 9, 11]];
  const ws = [16, 18, 3, 3];
  const g = convGeometry([2, 18, 9, 11], ws, { padding: 1 });
  const xs = shapes.map((s, k) => randArray(s.reduce((a, v) => a * v), 200 + k));
  const wv = randArray(16 * 18 * 9, 210, -0.3, 0.3), bv = randArray(16, 211);
  const r = randArray(2 * 16 * 9 * 11, 212);
  withProfile(profile, () => {
    const ep = { bias: true, activation: "none" as const, savePre: false };
    assert.deepEqual([planForward(g, ep).kind, planDgrad(g).kind, planWgrad(g, true).kind], kinds);
  });
  const parts = shapes.map((s, k) => parameter(xs[k], s, `part${k}`));
  const w = parameter(wv, ws, "w"), bias = parameter(bv, [16], "bias");
  const y = withProfile(profile, () =>
    scope(() => {
      const y = conv2dConcat(parts, w, { bias, padding: 1 });
      assert.equal(y.node?.name, "conv2d_concat", "took the parts route");
      backward(sum(mul(y, tensor(r, y.shape))));
      return y;
    }));
  const x = join(xs, shapes);
  assertClose(await y.read(), convRef(g, x, wv, bv), { what: "y", atol: 1e-4, rtol: 1e-4 });
  const dx = dgradRef(g, r, wv);
  let c0 = 0;
  for (const [k, p] of parts.entries()) {
    const c = shapes[k][1];
    assertClose(await p.grad!.read(), slab(dx, 2, 18, 99, c0, c), {
      what: `part ${k} grad`,
      atol: 1e-4,
      rtol: 1e-4,
    });
    c0 += c;
  }
  const ref = wgradRef(g, x, r);
  assertClose(await w.grad!.read(), ref.dw, { what: "dw", atol: 1e-3, rtol: 1e-4 });
  assertClose(await bias.grad!.read(), ref.db, { what: "db", atol: 1e-4, rtol: 1e-4 });
  for (const t of [y, ...parts, w, bias]) t.dispose();
}

Deno.test("conv2dConcat on the Winograd F(4×4) GEMM routes: forward and the gradients of every part, the weight and the bias match float64", async () => {
  await checkParts(activeProfile(), ["winograd-f4-gemm", "winograd-f4-gemm-flip", "winograd-f4"]);
});

Deno.test("conv2dConcat on the Winograd F(6×6) GEMM routes (a profile that allows them): the same against float64", async () => {
  await checkParts({ ...activeProfile(), winograd6: true }, [
    "winograd-f6-gemm",
    "winograd-f6-gemm-flip",
    "winograd-f6",
  ]);
});

Deno.test("conv2dConcat on the fused F(4×4) routes (a profile that allows them): the same against float64", async () => {
  await checkParts(
    { ...activeProfile(), fusedWino4MaxChannels: 32 },
    ["winograd-f4-fused", "winograd-f4-fused-flip", "winograd-f4-fused"],
  );
});

/** convTranspose2dConcat of three parts (5 + 7 + 6 = 18 channels → 16 at 9×11, stride 1,
 * padding 1) with a bias, against float64: the transposed conv is its conv's input gradient, its
 * input gradient that conv's forward, its weight gradient the conv's with the parts as dy. */
async function checkTransposedParts(profile: DeviceProfile, kinds: string[]) {
  const shapes = [[2, 5, 9, 11], [2, 7, 9, 11], [2, 6, 9, 11]];
  const ws = [18, 16, 3, 3];
  const g = convTransposeGeometry([2, 18, 9, 11], ws, { padding: 1 });
  const xs = shapes.map((s, k) => randArray(s.reduce((a, v) => a * v), 300 + k));
  const wv = randArray(18 * 16 * 9, 310, -0.3, 0.3), bv = randArray(16, 311);
  const r = randArray(2 * 16 * 9 * 11, 312);
  withProfile(profile, () => {
    const ep = { bias: true, activation: "none" as const, savePre: false };
    assert.deepEqual([planDgrad(g, ep).kind, planForward(g).kind, planWgrad(g, false).kind], kinds);
  });
  const parts = shapes.map((s, k) => parameter(xs[k], s, `part${k}`));
  const w = parameter(wv, ws, "w"), bias = parameter(bv, [16], "bias");
  const y = withProfile(profile, () =>
    scope(() => {
      const y = convTranspose2dConcat(parts, w, { bias, padding: 1 });
      assert.equal(y.node?.name, "conv_transpose2d_concat", "took the parts route");
      backward(sum(mul(y, tensor(r, y.shape))));
      return y;
    }));
  const x = join(xs, shapes), hw = 99;
  const yRef = dgradRef(g, x, wv).map((v, i) => v + bv[Math.floor(i / hw) % 16]);
  assertClose(await y.read(), yRef, { what: "convT y", atol: 1e-4, rtol: 1e-4 });
  const dx = convRef(g, r, wv);
  let c0 = 0;
  for (const [k, p] of parts.entries()) {
    const c = shapes[k][1];
    assertClose(await p.grad!.read(), slab(dx, 2, 18, hw, c0, c), {
      what: `convT part ${k} grad`,
      atol: 1e-4,
      rtol: 1e-4,
    });
    c0 += c;
  }
  const ref = wgradRef(g, r, x);
  assertClose(await w.grad!.read(), ref.dw, { what: "convT dw", atol: 1e-3, rtol: 1e-4 });
  const db = new Float64Array(16);
  r.forEach((v, i) => (db[Math.floor(i / hw) % 16] += v));
  assertClose(await bias.grad!.read(), db, { what: "convT db", atol: 1e-4, rtol: 1e-4 });
  for (const t of [y, ...parts, w, bias]) t.dispose();
}

Deno.test("convTranspose2dConcat on the Winograd F(4×4) GEMM routes: forward and every gradient match float64", async () => {
  await checkTransposedParts(activeProfile(), [
    "winograd-f4-gemm-flip",
    "winograd-f4-gemm",
    "winograd-f4",
  ]);
});

Deno.test("convTranspose2dConcat on the Winograd F(6×6) GEMM routes: forward and every gradient match float64", async () => {
  await checkTransposedParts({ ...activeProfile(), winograd6: true }, [
    "winograd-f6-gemm-flip",
    "winograd-f6-gemm",
    "winograd-f6",
  ]);
});

Deno.test("convTranspose2dConcat on the fused F(4×4) routes: forward and every gradient match float64", async () => {
  await checkTransposedParts(
    { ...activeProfile(), fusedWino4MaxChannels: 32 },
    ["winograd-f4-fused-flip", "winograd-f4-fused", "winograd-f4-fused"],
  );
});

Deno.test("conv2dConcat on the parts route with ReLU: gradients by finite differences", async () => {
  // ReLU's kink: small weights and biases of ±2 by channel keep every pre-activation far from
  // zero, so no finite-difference step crosses it and both branches are used.
  const inputs = [
    { data: randArray(9 * 5 * 6, 221), shape: [1, 9, 5, 6] },
    { data: randArray(8 * 5 * 6, 222), shape: [1, 8, 5, 6] },
    { data: randArray(16 * 17 * 9, 223, -0.05, 0.05), shape: [16, 17, 3, 3] },
    { data: Float32Array.from({ length: 16 }, (_, c) => (c % 2 ? 2 : -2)), shape: [16] },
  ];
  await gradCheck(
    (a: Tensor, b: Tensor, w: Tensor, bias: Tensor) =>
      conv2dConcat([a, b], w, { bias, padding: 1, activation: "relu" }),
    inputs,
    { maxPoints: 12 },
  );
});

Deno.test("conv2dConcat with one tensor twice among its parts: its gradient is the sum of both slabs", async () => {
  const xs = [2, 9, 6, 7], ws = [16, 18, 3, 3];
  const g = convGeometry([2, 18, 6, 7], ws, { padding: 1 });
  const xv = randArray(2 * 9 * 42, 240), wv = randArray(16 * 18 * 9, 241, -0.3, 0.3);
  const r = randArray(2 * 16 * 42, 242);
  const x = parameter(xv, xs, "x"), w = parameter(wv, ws, "w");
  const y = scope(() => {
    const y = conv2dConcat([x, x], w, { padding: 1 });
    assert.equal(y.node?.name, "conv2d_concat");
    backward(sum(mul(y, tensor(r, y.shape))));
    return y;
  });
  assertClose(await y.read(), convRef(g, join([xv, xv], [xs, xs]), wv), { what: "y", atol: 1e-4 });
  const dx = dgradRef(g, r, wv);
  const a = slab(dx, 2, 18, 42, 0, 9), b = slab(dx, 2, 18, 42, 9, 9);
  assertClose(await x.grad!.read(), a.map((v, i) => v + b[i]), { what: "dx", atol: 1e-4 });
  for (const t of [y, x, w]) t.dispose();
});

/** Runs fn under a dispatch tap; the number of dispatches of kernel `label`. */
function counting(label: string, fn: () => void): number {
  let n = 0;
  const prev = setDispatchTap((l) => void (l === label && n++));
  try {
    fn();
  } finally {
    setDispatchTap(prev);
  }
  return n;
}

// SNUNet's dense skips: one tensor is a part of several concatenated convs. The second
// conv's rule adds its slab of the input gradient into the first one's (autograd's `into`) in
// the output transform, with no grad_add pass; with accumulateInPlace off each sum is a pass.
Deno.test("conv2dConcat: a part of two convs gets its gradient summed in the second conv's write-out, equal to float64 and to separate sums", async () => {
  const xs = [2, 16, 9, 11], zs = [2, 2, 9, 11], ws = [16, 18, 3, 3];
  const g = convGeometry([2, 18, 9, 11], ws, { padding: 1 });
  const xv = randArray(2 * 16 * 99, 250), z1v = randArray(2 * 2 * 99, 251);
  const z2v = randArray(2 * 2 * 99, 252);
  const w1v = randArray(16 * 18 * 9, 253, -0.3, 0.3), w2v = randArray(16 * 18 * 9, 254, -0.3, 0.3);
  const r1 = randArray(2 * 16 * 99, 255), r2 = randArray(2 * 16 * 99, 256);
  const run = async (accumulateInPlace: boolean) => {
    const x = parameter(xv, xs, "x");
    const z1 = parameter(z1v, zs, "z1"), z2 = parameter(z2v, zs, "z2");
    const w1 = tensor(w1v, ws), w2 = tensor(w2v, ws);
    const adds = counting("grad_add", () =>
      scope(() => {
        const c1 = conv2dConcat([x, z1], w1, { padding: 1 });
        const c2 = conv2dConcat([x, z2], w2, { padding: 1 });
        assert.equal(c2.node?.name, "conv2d_concat", "took the parts route");
        const loss = add(sum(mul(c1, tensor(r1, c1.shape))), sum(mul(c2, tensor(r2, c2.shape))));
        backward(loss, undefined, { accumulateInPlace });
      }));
    const grads = await Promise.all([x, z1, z2].map((t) => t.grad!.read()));
    for (const t of [x, z1, z2, w1, w2]) t.dispose();
    return { adds, grads };
  };
  const inPlace = await run(true), apart = await run(false);
  assert.equal(inPlace.adds, 0, "x's two slabs summed in the output transform");
  assert.ok(apart.adds > 0, "without it, a grad_add pass sums them");
  const d1 = dgradRef(g, r1, w1v), d2 = dgradRef(g, r2, w2v);
  const want = slab(d1, 2, 18, 99, 0, 16).map((v, i) => v + slab(d2, 2, 18, 99, 0, 16)[i]);
  assertClose(inPlace.grads[0], want, { what: "x grad", atol: 1e-4, rtol: 1e-4 });
  assertClose(inPlace.grads[1], slab(d1, 2, 18, 99, 16, 2), { what: "z1 grad", atol: 1e-4 });
  assertClose(inPlace.grads[2], slab(d2, 2, 18, 99, 16, 2), { what: "z2 grad", atol: 1e-4 });
  inPlace.grads.forEach((gv, k) =>
    assertClose(gv, apart.grads[k], { what: `grad ${k}, in place vs apart`, atol: 1e-6 })
  );
});

// A pending gradient that something else also holds is not written: in y = (x + q) + conv([x,
// q]) with q = 2p, the add hands one tensor to x and q as their gradient so far; the conv's rule
// runs before q's (q feeds it), and q's rule must still read the add's gradient unchanged.
Deno.test("conv2dConcat: parts whose gradient so far is one shared tensor get theirs summed apart, equal to float64", async () => {
  const xs = [2, 16, 9, 11], ws = [16, 32, 3, 3];
  const g = convGeometry([2, 32, 9, 11], ws, { padding: 1 });
  const xv = randArray(2 * 16 * 99, 260), pv = randArray(2 * 16 * 99, 264);
  const wv = randArray(16 * 32 * 9, 262, -0.3, 0.3), r = randArray(2 * 16 * 99, 263);
  const x = parameter(xv, xs, "x"), p = parameter(pv, xs, "p"), w = tensor(wv, ws);
  scope(() => {
    const q = mulScalar(p, 2);
    const y = add(add(x, q), conv2dConcat([x, q], w, { padding: 1 }));
    backward(sum(mul(y, tensor(r, y.shape))));
  });
  const d = dgradRef(g, r, wv);
  const dx = slab(d, 2, 32, 99, 0, 16), dq = slab(d, 2, 32, 99, 16, 16);
  assertClose(await x.grad!.read(), dx.map((v, i) => v + r[i]), { what: "x grad", atol: 1e-4 });
  assertClose(await p.grad!.read(), dq.map((v, i) => 2 * (v + r[i])), {
    what: "p grad",
    atol: 1e-4,
  });
  for (const t of [x, p, w]) t.dispose();
});

Deno.test("conv2dConcat off the F(4×4) routes (8 channels: F(2×2)) is conv2d of the joined input", async () => {
  const shapes = [[2, 3, 7, 9], [2, 5, 7, 9]];
  const ws = [6, 8, 3, 3];
  const g = convGeometry([2, 8, 7, 9], ws, { padding: 1 });
  const xs = shapes.map((s, k) => randArray(s.reduce((a, v) => a * v), 230 + k));
  const wv = randArray(6 * 8 * 9, 232, -0.5, 0.5);
  const y = scope(() => {
    const y = conv2dConcat(shapes.map((s, k) => tensor(xs[k], s)), tensor(wv, ws), { padding: 1 });
    assert.notEqual(y.node?.name, "conv2d_concat");
    return y;
  });
  assertClose(await y.read(), convRef(g, join(xs, shapes), wv), { what: "y", atol: 1e-4 });
  y.dispose();
});
