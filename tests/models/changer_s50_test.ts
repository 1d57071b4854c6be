// ChangerEx ResNeSt-50 (Open-CD's changer_ex_s50: IA_ResNeSt-50, exchanges after stages 2–4):
// formula weights reproduce the upstream logits, loss and listed gradients
// (../shared/fixtures/formula).

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { createChangerEx } from "../../models/changer.ts";
import { checkFormulaParity, formulaPresent } from "./formula_parity.ts";

await initDevice();

// grad.decode_head.neck_layer.flow_make.0.bias is mathematically 0 (InstanceNorm removes any
// per-channel constant): both sides hold rounding noise (≤ 5e-9 upstream), which the bound's
// model-wide term absorbs, so its ratio to its own max means nothing.

Deno.test({
  name: "ChangerEx ResNeSt-50 parity with Open-CD (formula weights)",
  ignore: !formulaPresent("changer_ex_s50"),
  fn: async () => {
    const model = createChangerEx(0, "s50");
    assert.equal(model.parameterCount(), 26_692_994);
    const r = await checkFormulaParity(model, "changer_ex_s50");
    console.log(
      `logits ${r.logits.toExponential(2)}, loss ${r.loss.ours} / ${r.loss.ref}, worst grad ` +
        `${r.worstGrad.name} ${r.worstGrad.ratio.toExponential(2)}`,
    );
    model.dispose();
  },
});
