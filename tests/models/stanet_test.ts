// STANet-Base (Open-CD's STAHead, sa_mode 'None', on ResNetV1c-18): formula weights reproduce
// the upstream distance map, the thresholded ±100 logits, the BCL loss and the listed
// gradients (../shared/fixtures/formula, README "stanet_base_r18").

import { initDevice } from "../../engine/device.ts";
import { setEvalFolding } from "../../engine/nn/conv_bn_act.ts";
import { createStanet } from "../../models/stanet.ts";
import { checkFormulaParity, formulaPresent } from "./formula_parity.ts";

await initDevice();

Deno.test({
  name: "STANet-Base R18 parity with Open-CD (formula weights)",
  ignore: !formulaPresent("stanet_base_r18"),
  fn: async () => {
    const model = createStanet(0);
    // Eval-mode folding of BN into the conv has no autograd: the reference's gradients are of
    // the eval-mode loss, so the head's ConvModules run unfolded here.
    setEvalFolding(model, false);
    const r = await checkFormulaParity(model, "stanet_base_r18", {
      // The configured loss: BCL on the distance map (the ±100 logits carry no gradient).
      loss: (model, _logits, labels) => model.loss!(labels),
    });
    console.log(
      `logits ${r.logits.toExponential(2)}, dist ${r.taps.dist?.toExponential(2)}, loss ` +
        `${r.loss.ours} / ${r.loss.ref}, worst grad ${r.worstGrad.name} ` +
        `${r.worstGrad.ratio.toExponential(2)}`,
    );
  },
});
