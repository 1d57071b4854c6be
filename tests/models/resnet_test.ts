// mmseg ResNet (models/resnet.ts): the configurations Open-CD detectors use give mmseg's
// state_dict names, parameter counts and output strides. Its numerics are checked against
// mmseg through BIT-R18's "feat" tap (tests/models/bit_test.ts).

import assert from "node:assert/strict";
import { noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { Random } from "../../engine/random.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { ResNet } from "../../models/resnet.ts";
import { randArray } from "../util.ts";

async function shapes(net: ResNet, size: number): Promise<number[][]> {
  net.eval();
  const outs = scope(() =>
    noGrad(() => net.forward(tensor(randArray(3 * size * size, 1), [1, 3, size, size])))
  );
  const s = outs.map((t) => [...t.shape]);
  assert.ok((await outs[outs.length - 1].read()).every(Number.isFinite));
  outs.forEach((t) => t.dispose());
  return s;
}

Deno.test("ResNetV1c-18, 4 stages: torchvision's 11.2M backbone plus the deep stem, strides 4–32", async () => {
  await initDevice();
  const net = new ResNet({ depth: 18 }, new Random(0));
  // mmseg resnet18_v1c without fc: 11,176,512 − 9,536 (7×7 stem) + 28,768 (deep stem).
  assert.equal(net.parameterCount(), 11_195_744);
  const names = [...net.stateDict().keys()];
  for (
    const n of [
      "stem.0.weight",
      "stem.7.running_var",
      "layer1.0.conv1.weight",
      "layer4.1.bn2.weight",
      "layer4.0.downsample.1.num_batches_tracked",
    ]
  ) {
    assert.ok(names.includes(n), `missing ${n}`);
  }
  assert.ok(!names.includes("layer1.0.downsample.0.weight"), "layer1 needs no downsample");
  assert.deepEqual(await shapes(net, 64), [[1, 64, 16, 16], [1, 128, 8, 8], [1, 256, 4, 4], [
    1,
    512,
    2,
    2,
  ]]);
  net.dispose();
});

Deno.test("ResNet: dilated stages keep their resolution; the 7×7 stem is conv1/bn1", async () => {
  await initDevice();
  const net = new ResNet({
    depth: 18,
    strides: [1, 2, 1, 1],
    dilations: [1, 1, 2, 4],
    outIndices: [1, 3],
    deepStem: false,
    contractDilation: true,
  }, new Random(0));
  const names = [...net.stateDict().keys()];
  assert.ok(names.includes("conv1.weight") && names.includes("bn1.running_mean"));
  assert.ok(!names.some((n) => n.startsWith("stem.")));
  assert.deepEqual(await shapes(net, 64), [[1, 128, 8, 8], [1, 512, 8, 8]]);
  net.dispose();
  assert.throws(() => new ResNet({ depth: 50 }, new Random(0)), /18 and 34/);
});
