// ChangeStar 1x96 (Open-CD's ChangeStarHead on ResNetV1c-18, UPerNet or FarSeg inside): formula
// weights reproduce the upstream t1t2 logits, the configured loss (both directions' BCE, plus
// Dice for FarSeg) and the listed gradients (../shared/fixtures/formula).

import { initDevice } from "../../engine/device.ts";
import { setEvalFolding } from "../../engine/nn/conv_bn_act.ts";
import { createChangeStar } from "../../models/changestar.ts";
import { checkFormulaParity, formulaPresent } from "./formula_parity.ts";

await initDevice();

for (const variant of ["upernet", "farseg"] as const) {
  const name = `changestar_${variant}_r18`;
  Deno.test({
    name: `ChangeStar ${variant} R18 parity with Open-CD (formula weights)`,
    ignore: !formulaPresent(name),
    fn: async () => {
      const model = createChangeStar(0, variant);
      // Eval-mode folding of BN into the conv has no autograd; the reference's gradients are
      // of the eval-mode loss, so the ConvModules run unfolded here.
      setEvalFolding(model, false);
      // These logits hardly depend on the input (README: pair difference 2e-4 / 7e-4 against
      // max |logit| 0.05), so the bound is tight.
      const r = await checkFormulaParity(model, name, { outputTol: 1e-6 });
      console.log(
        `logits ${r.logits.toExponential(2)}, loss ${r.loss.ours} / ${r.loss.ref}, worst grad ` +
          `${r.worstGrad.name} ${r.worstGrad.ratio.toExponential(2)}`,
      );
    },
  });
}
