// Eval-time folding owned by ConvBnAct (engine/nn/conv_bn_act.ts) and by the ResNet and ResNeSt
// blocks (engine/nn/fold.ts convThenBn): each detector's eval output with its BatchNorms folded
// into the convs equals the unfolded layers within 1e-5, after a training forward has moved the
// running statistics away from (0, 1). SNUNet folds since ConvBnAct owns its conv2 → bn2; FC-Siam
// and TinyCD's EfficientNet folded before and still do; BIT's ResNet-18 and ChangerEx-S50's
// ResNeSt, and the SegFormer head's 1×1 ConvModules, since session 20.

import assert from "node:assert/strict";
import { noGrad } from "../../engine/autograd.ts";
import { setEvalFolding } from "../../engine/nn/conv_bn_act.ts";
import { stats } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { MODELS } from "../../models/registry.ts";
import { initDevice, randomPairBatch } from "../util.ts";

await initDevice();

for (
  const name of [
    "snunet_c16",
    "fc_siam_diff",
    "tinycd",
    "bit_r18",
    "changer_ex_s50",
    "changeformer_mit_b0",
  ]
) {
  Deno.test(`${name}: eval with folded BatchNorms equals the unfolded layers within 1e-5`, async () => {
    const model = MODELS[name].create(0);
    // The backbones' deepest stages need more than one value per channel for training's BN.
    const deep = name !== "snunet_c16" && name !== "fc_siam_diff" && name !== "tinycd";
    const { a, b } = deep ? randomPairBatch(2, 64) : randomPairBatch(1, 32);
    // Training-mode forwards move the running statistics (momentum 0.1).
    for (let i = 0; i < 3; i++) scope(() => void noGrad(() => model.train().forward(a, b)));
    model.eval();
    const run = (): { y: Tensor; dispatches: number } => {
      const before = stats.dispatches;
      const y = scope(() => noGrad(() => model.forward(a, b)));
      return { y, dispatches: stats.dispatches - before };
    };
    const folded = run();
    setEvalFolding(model, false);
    const unfolded = run();
    const got = await folded.y.read(), want = await unfolded.y.read();
    let maxAbs = 0, maxRef = 0;
    for (let i = 0; i < want.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
      maxRef = Math.max(maxRef, Math.abs(want[i]));
    }
    console.log(
      `${name}: max |Δ| ${maxAbs.toExponential(2)} (max |y| ${maxRef.toFixed(3)}), ` +
        `dispatches folded ${folded.dispatches}, unfolded ${unfolded.dispatches}`,
    );
    assert.ok(maxRef > 1e-3, "the output is not trivially zero");
    assert.ok(maxAbs <= 1e-5, `${name}: folded vs unfolded max |Δ| ${maxAbs}`);
    // Folding happened: each folded BN saves its normalisation passes.
    assert.ok(folded.dispatches < unfolded.dispatches);
    for (const t of [folded.y, unfolded.y, a, b]) t.dispose();
    model.dispose();
  });
}
