// CGNet (VGG-16-BN), as Open-CD builds it: formula weights reproduce the upstream change logit,
// the change prior (aux0, resized to the input), the configured loss (BCE of the logit plus BCE
// of the change prior) and the listed gradients (../shared/fixtures/formula).

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { Cgnet } from "../../models/cgnet.ts";
import { checkFormulaParity, FORMULA, formulaPresent } from "./formula_parity.ts";

await initDevice();

Deno.test({
  name: "CGNet parity with Open-CD (formula weights)",
  ignore: !formulaPresent("cgnet_vgg16"),
  fn: async () => {
    const model = new Cgnet(0);
    const manifest = JSON.parse(await Deno.readTextFile(`${FORMULA}cgnet_vgg16_formula.json`));
    assert.equal(model.parameterCount(), manifest.params);
    const r = await checkFormulaParity(model, "cgnet_vgg16");
    console.log(
      `logits ${r.logits.toExponential(2)}, taps ${JSON.stringify(r.taps)}, loss ` +
        `${r.loss.ours} / ${r.loss.ref}, worst grad ${r.worstGrad.name} ` +
        `${r.worstGrad.ratio.toExponential(2)}`,
    );
    model.dispose();
  },
});
