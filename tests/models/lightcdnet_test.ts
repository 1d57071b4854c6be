// LightCDNet-s (Open-CD: LightCDNet small + TinyFPN + DS_FPNHead + auxiliary FCNHead): formula
// weights reproduce the upstream logits, the CE loss and its listed gradients
// (../shared/fixtures/formula), and the configured loss: decode CE with OHEM + 0.4 × the
// auxiliary head's CE (`loss.upstream`).

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { cdLoss } from "../../engine/ops/cd_loss.ts";
import { add } from "../../engine/ops/elementwise.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import type { Tensor } from "../../engine/tensor.ts";
import { createLightCDNet } from "../../models/lightcdnet.ts";
import { MODELS } from "../../models/registry.ts";
import { checkFormulaParity, FORMULA, formulaPresent } from "./formula_parity.ts";

await initDevice();

Deno.test({
  name: "LightCDNet-s parity with Open-CD (formula weights), configured loss with OHEM and aux",
  ignore: !formulaPresent("lightcdnet_s"),
  fn: async () => {
    const model = createLightCDNet(0);
    let upstream: Tensor | null = null;
    const r = await checkFormulaParity(model, "lightcdnet_s", {
      // The reference gradients are of `loss`, the logits' plain CE (README "Inputs and
      // conventions"): the auxiliary head gets none. The configured loss (OHEM CE + 0.4 aux
      // CE) is computed beside it, with no gradient taken, as `loss.upstream` was.
      loss: (m, logits, labels) => {
        const ohem = MODELS.lightcdnet_s.recipe.loss!.ohem!;
        upstream = add(cdLoss(logits, labels, { ohem }).loss, m.auxLoss!(labels)).keep();
        return cdLoss(logits, labels).loss;
      },
    });
    console.log(
      `logits ${r.logits.toExponential(2)}, loss ${r.loss.ours} / ${r.loss.ref}, worst grad ` +
        `${r.worstGrad.name} ${r.worstGrad.ratio.toExponential(2)}`,
    );
    const ref = readSafetensors(`${FORMULA}lightcdnet_s_formula.reference.safetensors`);
    const want = ref.get("loss.upstream")!.data[0];
    const configured = upstream as unknown as Tensor;
    const got = ((await configured.read()) as Float32Array)[0];
    configured.kept = false;
    configured.dispose();
    console.log(`configured loss ${got} / ${want}`);
    assert.ok(Math.abs(got - want) <= 1e-5 * want, `loss.upstream ${got} vs ${want}`);
    assert.equal(model.inferenceParameterCount(), 342_489);
  },
});
