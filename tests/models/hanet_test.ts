// HANet (Open-CD: HAN backbone + FCNHead without convs): formula weights reproduce the upstream
// logits, loss and listed gradients (../shared/fixtures/formula).

import { initDevice } from "../../engine/device.ts";
import { createHANet } from "../../models/hanet.ts";
import { checkFormulaParity, formulaPresent } from "./formula_parity.ts";

await initDevice();

Deno.test({
  name: "HANet parity with Open-CD (formula weights)",
  ignore: !formulaPresent("hanet"),
  fn: async () => {
    const r = await checkFormulaParity(createHANet(0), "hanet");
    console.log(
      `logits ${r.logits.toExponential(2)}, loss ${r.loss.ours} / ${r.loss.ref}, worst grad ` +
        `${r.worstGrad.name} ${r.worstGrad.ratio.toExponential(2)}`,
    );
  },
});
