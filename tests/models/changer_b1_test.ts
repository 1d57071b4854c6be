// ChangerEx MiT-b1 (Open-CD's changer_ex_mit-b1): formula weights reproduce the upstream
// logits, loss and listed gradients (../shared/fixtures/formula).

import assert from "node:assert/strict";
import { isGradEnabled } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import type { Dropout2d } from "../../engine/nn/dropout.ts";
import { add, mul, relu } from "../../engine/ops/elementwise.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";
import { createChangerEx } from "../../models/changer.ts";
import { ConvModule1x1 } from "../../models/segformer_head.ts";
import { checkFormulaParity, formulaPresent } from "./formula_parity.ts";

await initDevice();

// README allows this model 1e-2 of each gradient's max (upstream's 1- and 2-thread runs differ
// by up to 7e-3) and suspects grid_sample. The cause is one ReLU at float32's knife edge instead:
// decode_head.convs.3 on date A, channel 109 at pixel 55 (row 6, column 7 of 8×8), whose input
// we compute as +5.07e-7 (float64 from our float32 stage-4 feature: +5.9e-7) from a 512-term sum
// with Σ|terms| = 9.0, so its sign is rounding. Upstream's ReLU blocks there. That one 1/32-scale
// element, upsampled over 8×8 pixels of level 0, moves convs.3's gradient by 6.9e-3 of its max
// and every backbone gradient by 1–3e-3. Central finite differences of our loss along
// g_ref − g_ours sit exactly halfway between the two (a kink: right derivative ours, left
// upstream's); grid nudges and 1e-6 input jitter move our gradients by < 3e-5 of their max.
// This test takes upstream's decision at that one ReLU (the forward moves by |pre| < 1e-6) and
// must then pass the unchanged harness (1e-4): everything else agrees to rounding.
const KNIFE = { call: 3, index: 109 * 64 + 55 };

Deno.test({
  name: "ChangerEx MiT-b1 parity with Open-CD (formula weights; its one knife-edge ReLU)",
  ignore: !formulaPresent("changer_ex_mit_b1"),
  fn: async () => {
    const forward = ConvModule1x1.prototype.forward;
    let calls = 0;
    let pre: Tensor | null = null;
    ConvModule1x1.prototype.forward = function (this: ConvModule1x1, x: Tensor, d?: Dropout2d) {
      // Only the gradient pass runs with a tape; its fourth ConvModule is date A's convs.3.
      if (!isGradEnabled() || calls++ !== KNIFE.call) return forward.call(this, x, d);
      pre = this.bn.forward(this.conv.forward(x)).keep();
      const e = new Float32Array(pre.size);
      e[KNIFE.index] = -1;
      // relu(pre) − e·pre there: the value moves by |pre|, the gradient stops as upstream's.
      return add(relu(pre), mul(pre, tensor(e, pre.shape)));
    };
    try {
      const model = createChangerEx(0, "mit_b1");
      assert.equal(model.parameterCount(), 13_354_818);
      const r = await checkFormulaParity(model, "changer_ex_mit_b1");
      console.log(
        `logits ${r.logits.toExponential(2)}, loss ${r.loss.ours} / ${r.loss.ref}, worst grad ` +
          `${r.worstGrad.name} ${r.worstGrad.ratio.toExponential(2)}`,
      );
      model.dispose();
    } finally {
      ConvModule1x1.prototype.forward = forward;
    }
    assert.ok(pre, "date A's convs.3 was not reached");
    const v = ((await (pre as Tensor).read()) as Float32Array)[KNIFE.index];
    (pre as Tensor).kept = false;
    (pre as Tensor).dispose();
    console.log(`knife-edge pre-activation ${v}`);
    assert.ok(v > 0 && v < 1e-6, `the knife-edge ReLU input is ${v}, not in (0, 1e-6)`);
  },
});
