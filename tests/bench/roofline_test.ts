import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import type { ConvCall } from "../../engine/conv_trace.ts";
import { convGeometry } from "../../kernels/conv2d.ts";
import { directMacs, passBytes, routeMacs, stepFloors } from "../../bench/roofline.ts";

await initDevice();

const call = (ci: number, co: number, size: number): ConvCall => ({
  op: "conv2d",
  g: convGeometry([8, ci, size, size], [co, ci, 3, 3], { padding: 1 }),
  activation: "none",
  bias: false,
  recording: true,
  inputGrad: true,
  weightGrad: true,
});

Deno.test("roofline: Winograd F(4×4) does a quarter of the multiplies and moves V and P", () => {
  const c = call(64, 32, 128);
  const direct = 8 * 32 * 128 * 128 * 64 * 9;
  assert.equal(directMacs(c.g), direct);
  assert.equal(routeMacs(c, "forward", { kind: "winograd-f4-gemm", images: 8 }), direct / 4);
  assert.equal(routeMacs(c, "forward", { kind: "winograd-f2" }), (direct * 16) / 36);
  assert.equal(routeMacs(c, "forward", { kind: "direct" }), direct);
  const x = 8 * 64 * 128 * 128, y = 8 * 32 * 128 * 128, w = 32 * 64 * 9;
  assert.equal(passBytes(c, null), 4 * (x + y + w));
  const tiles = 8 * 32 * 32;
  assert.equal(
    passBytes(c, { kind: "winograd-f4-gemm", images: 8 }),
    4 * (x + y + w + 2 * 36 * tiles * (64 + 32)),
  );
});

Deno.test("roofline: FC-Siam-Diff's step floors come from its traced convs", () => {
  const f = stepFloors("fc_siam_diff", 22e12, 179e12, 3.35e12);
  assert.equal(f.convs, 34);
  assert.ok(f.ours < f.direct / 3, `${f.ours} vs ${f.direct}`); // mostly F(4×4)
  assert.ok(f.oursBytes > 4 * f.compileBytes); // and so mostly bound by V and P's traffic
  assert.ok(f.oursS > f.compileS && f.oursForwardS < f.oursS);
});
