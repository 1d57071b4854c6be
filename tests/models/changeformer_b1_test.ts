// ChangeFormer MiT-b1 (Open-CD's Siamese SegFormer with b1 widths): formula weights reproduce
// the upstream logits, loss and listed gradients (../shared/fixtures/formula).

import { initDevice } from "../../engine/device.ts";
import { createChangeFormer } from "../../models/changeformer.ts";
import { checkFormulaParity, formulaPresent } from "./formula_parity.ts";

await initDevice();

Deno.test({
  name: "ChangeFormer MiT-b1 parity with Open-CD (formula weights)",
  ignore: !formulaPresent("changeformer_mit_b1"),
  fn: async () => {
    const r = await checkFormulaParity(createChangeFormer(0, "b1"), "changeformer_mit_b1");
    console.log(
      `logits ${r.logits.toExponential(2)}, loss ${r.loss.ours} / ${r.loss.ref}, worst grad ` +
        `${r.worstGrad.name} ${r.worstGrad.ratio.toExponential(2)}`,
    );
  },
});
