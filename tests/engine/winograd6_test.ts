// Winograd F(6×6, 3×3) around the GEMM (kernels/conv2d_winograd4.ts and conv2d_winograd_wgrad.ts
// with `tile` 6): forward with its epilogue, input gradient and weight gradient against float64
// references on odd shapes (partial 6×6 tiles on every edge, paddings 0–2, groups, chunks of
// images), the planner's choice between F(6×6) and F(4×4) under a profile that allows it, and the
// three passes through the router.

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import {
  convForwardRaw,
  convInputGradRaw,
  convWeightGradRaw,
  runWinograd4,
  winogradWeightGradRaw,
} from "../../engine/ops/conv2d_launch.ts";
import { scope } from "../../engine/scope.ts";
import { empty, tensor } from "../../engine/tensor.ts";
import { convGeometry, NO_EPILOGUE } from "../../kernels/conv2d.ts";
import {
  describeRoute,
  planDgrad,
  planForward,
  planWgrad,
  winograd6Pays,
} from "../../kernels/conv_plan.ts";
import { H100_PROFILE, withProfile } from "../../kernels/device_profile.ts";
import { assertClose, randArray } from "../util.ts";
import { convRef, dgradRef, wgradRef } from "./conv_ref.ts";

await initDevice();

const F6 = { ...H100_PROFILE, winograd6: true };
const size = (s: number[]) => s.reduce((a, b) => a * b);

Deno.test("Winograd F(6×6, 3×3) around the GEMM: forward with bias, PReLU per channel and its pre-activation, input gradient, odd shapes, paddings, groups, chunks", async () => {
  // [x, w, padding, groups, images per launch]
  const shapes: [number[], number[], number, number, number][] = [
    [[2, 5, 7, 11], [6, 5, 3, 3], 1, 1, 2], // output 7×11: partial tiles on both edges
    [[3, 4, 14, 9], [7, 4, 3, 3], 0, 1, 1], // no padding (12×7), three images one at a time
    [[1, 6, 5, 9], [3, 6, 3, 3], 2, 1, 1], // padding 2 (the input gradient's padding 0)
    [[2, 6, 13, 8], [10, 3, 3, 3], 1, 2, 2], // 2 groups of 3→5
    [[1, 9, 8, 7], [6, 3, 3, 3], 1, 3, 1], // 3 groups of 3→2
  ];
  for (const [k, [xs, ws, padding, groups, images]] of shapes.entries()) {
    const g = convGeometry(xs, ws, { padding, groups });
    const x = randArray(size(xs), 200 + k);
    const w = randArray(size(ws), 210 + k, -0.5, 0.5);
    const bias = randArray(g.co, 220 + k);
    const slopes = randArray(g.co, 230 + k, 0.05, 0.3);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 240 + k);
    const ep = { bias: true, activation: "prelu" as const, savePre: true, slopes: g.co };
    const [y, pre, dx] = scope(() => {
      const y = empty([g.batch, g.co, g.ho, g.wo]), pre = empty(y.shape);
      const extra = [tensor(bias, [g.co]), tensor(slopes, [g.co])];
      runWinograd4(
        g,
        tensor(x, xs),
        tensor(w, ws),
        false,
        ep,
        extra,
        [y, pre],
        images,
        undefined,
        undefined,
        6,
      );
      const dx = empty(xs);
      const tdy = tensor(dy, [g.batch, g.co, g.ho, g.wo]);
      runWinograd4(
        g,
        tdy,
        tensor(w, ws),
        true,
        NO_EPILOGUE,
        [],
        [dx],
        images,
        undefined,
        undefined,
        6,
      );
      return [y, pre, dx];
    });
    const what = `F(6×6) ${xs}→${ws} p${padding} g${groups} images ${images}`;
    const ref = convRef(g, x, w, bias, "prelu", slopes);
    assertClose(await y.read(), ref, { what: `${what} y`, atol: 1e-4, rtol: 1e-4 });
    const preRef = convRef(g, x, w, bias);
    assertClose(await pre.read(), preRef, { what: `${what} pre`, atol: 1e-4, rtol: 1e-4 });
    assertClose(await dx.read(), dgradRef(g, dy, w), { what: `${what} dx`, atol: 1e-4 });
    for (const t of [y, pre, dx]) t.dispose();
  }
});

Deno.test("Winograd F(6×6, 3×3) weight gradient: odd shapes, paddings 0–2, partial tiles, groups, chunks of images summed", async () => {
  // [x, w, padding, groups, chunk bytes (undefined: one launch)]
  const shapes: [number[], number[], number, number, number?][] = [
    [[2, 3, 7, 9], [5, 3, 3, 3], 1, 1], // output 7×9: partial tiles on both edges
    [[1, 6, 14, 8], [4, 6, 3, 3], 0, 1], // no padding: output 12×6, whole tiles
    [[2, 5, 5, 11], [7, 5, 3, 3], 2, 1], // padding 2: output 7×13
    [[3, 4, 9, 5], [6, 4, 3, 3], 1, 1, 64 * 6 * 2 * 4], // three images in chunks of one
    [[2, 34, 6, 7], [32, 17, 3, 3], 1, 2], // 2 groups of 17→16
  ];
  for (const [k, [xs, ws, padding, groups, chunkBytes]] of shapes.entries()) {
    const g = convGeometry(xs, ws, { padding, groups });
    const x = randArray(size(xs), 250 + k);
    const dy = randArray(g.batch * g.co * g.ho * g.wo, 260 + k);
    const dw = scope(() =>
      winogradWeightGradRaw(
        g,
        tensor(x, xs),
        tensor(dy, [g.batch, g.co, g.ho, g.wo]),
        chunkBytes,
        6,
      )
    );
    const what = `F(6×6) wgrad ${xs}→${ws} p${padding} g${groups}`;
    assertClose(await dw.read(), wgradRef(g, x, dy).dw, { what, atol: 1e-4, rtol: 1e-4 });
    dw.dispose();
  }
});

Deno.test("F(6×6) is planned only where the profile allows it and its tiles fit the output", () => {
  // 64·⌈H/6⌉·⌈W/6⌉ against 36·⌈H/4⌉·⌈W/4⌉ transformed elements.
  withProfile(F6, () => {
    assert.ok(winograd6Pays(512, 512), "512²: 0.80 of F(4×4)'s elements");
    assert.ok(winograd6Pays(64, 64), "64²: 0.84");
    assert.ok(!winograd6Pays(32, 32), "32²: 1.0");
    assert.ok(!winograd6Pays(16, 16), "16²: 1.0");
  });
  assert.ok(!winograd6Pays(512, 512), "off in the H100 profile by default");
  const g = convGeometry([8, 64, 64, 64], [64, 64, 3, 3], { padding: 1 });
  assert.equal(describeRoute(planForward(g)), "winograd-f4-gemm images=8");
  withProfile(F6, () => {
    assert.equal(describeRoute(planForward(g)), "winograd-f6-gemm images=8");
    assert.equal(describeRoute(planDgrad(g)), "winograd-f6-gemm-flip images=8");
    assert.equal(describeRoute(planWgrad(g, false)), "winograd-f6 images=8");
    const small = convGeometry([8, 256, 32, 32], [256, 256, 3, 3], { padding: 1 });
    assert.equal(planForward(small).kind, "winograd-f4-gemm");
    assert.equal(planWgrad(small, false).kind, "winograd-f4");
  });
});

Deno.test("F(6×6) through the router: forward, input and weight gradients with the bias's of a 17→18 conv", async () => {
  const xs = [2, 17, 12, 18], ws = [18, 17, 3, 3];
  const g = convGeometry(xs, ws, { padding: 1 });
  const x = randArray(size(xs), 270);
  const w = randArray(size(ws), 271, -0.2, 0.2);
  const dy = randArray(g.batch * g.co * g.ho * g.wo, 272);
  const [y, dx, dw, db] = withProfile(F6, () => {
    assert.equal(planForward(g).kind, "winograd-f6-gemm");
    assert.equal(planDgrad(g).kind, "winograd-f6-gemm-flip");
    assert.equal(planWgrad(g, true).kind, "winograd-f6");
    return scope(() => {
      const tdy = tensor(dy, [g.batch, g.co, g.ho, g.wo]);
      const { dw, db } = convWeightGradRaw(g, tensor(x, xs), tdy, true);
      return [
        convForwardRaw(g, tensor(x, xs), tensor(w, ws)).y,
        convInputGradRaw(g, tdy, tensor(w, ws)).y,
        dw,
        db!,
      ];
    });
  });
  assertClose(await y.read(), convRef(g, x, w), { what: "router y", atol: 1e-4, rtol: 1e-4 });
  assertClose(await dx.read(), dgradRef(g, dy, w), { what: "router dx", atol: 1e-4, rtol: 1e-4 });
  const ref = wgradRef(g, x, dy);
  assertClose(await dw.read(), ref.dw, { what: "router dw", atol: 1e-4, rtol: 1e-4 });
  assertClose(await db.read(), ref.db, { what: "router db", atol: 1e-4, rtol: 1e-4 });
  for (const t of [y, dx, dw, db]) t.dispose();
});
