// The parity fixtures under F(6×6): with the profile's winograd6 on, every Winograd GEMM conv
// whose output F(6×6) tiles well (kernels/conv_plan.ts winograd6Pays: here FC-Siam-Diff's
// 256², 128² and 64² convs, STANet's ResNet-18 stem and layer1 at 128² and 64²) takes it, and
// the original code's outputs must still be reproduced to the same 1e-4: FC-Siam-Diff's
// log-probabilities (inference, folded BatchNorm) and STANet's distance map, loss and gradients
// (training mode, all three passes). The profile's switch is off until a GPU measurement turns
// it on; this is the numerics half of that decision.

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { setDispatchTap } from "../../engine/recorder.ts";
import { setEvalFolding } from "../../engine/nn/conv_bn_act.ts";
import { H100_PROFILE, withProfile } from "../../kernels/device_profile.ts";
import { createStanet } from "../../models/stanet.ts";
import { fcParity, present } from "./fc_parity.ts";
import { checkFormulaParity, formulaPresent } from "./formula_parity.ts";

await initDevice();

const F6 = { ...H100_PROFILE, winograd6: true };

/** fn under the F(6×6) profile, with the F(6×6) launches it recorded counted by kernel. */
async function underF6<T>(fn: () => Promise<T>): Promise<{ r: T; launches: Map<string, number> }> {
  const launches = new Map<string, number>();
  const prev = setDispatchTap((label) => {
    if (/wino(grad)?6_/.test(label)) launches.set(label, (launches.get(label) ?? 0) + 1);
  });
  try {
    return { r: await withProfile(F6, fn), launches };
  } finally {
    setDispatchTap(prev);
  }
}

Deno.test({
  name: "F(6×6): FC-Siam-diff still reproduces the original code's log-probabilities",
  ignore: !present,
  fn: async () => {
    const { r: d, launches } = await underF6(() => fcParity("diff", "fc_siam_diff_seed0"));
    console.log(`max |Δ log-prob| ${d.toExponential(2)}; ${JSON.stringify([...launches])}`);
    assert.ok(launches.get("conv2d_winograd6_output"), "no conv took F(6×6)");
  },
});

Deno.test({
  name: "F(6×6): STANet-Base R18 still matches Open-CD's distance map, loss and gradients",
  ignore: !formulaPresent("stanet_base_r18"),
  fn: async () => {
    const model = createStanet(0);
    setEvalFolding(model, false);
    const { r, launches } = await underF6(() =>
      checkFormulaParity(model, "stanet_base_r18", {
        loss: (model, _logits, labels) => model.loss!(labels),
      })
    );
    console.log(JSON.stringify([...launches]));
    for (const k of ["conv2d_winograd6_output", "conv2d_wgrad_wino6_output"]) {
      assert.ok(launches.get(k), `no ${k} launch: F(6×6) was not taken`);
    }
    console.log(
      `logits ${r.logits.toExponential(2)}, dist ${r.taps.dist?.toExponential(2)}, loss ` +
        `${r.loss.ours} / ${r.loss.ref}, worst grad ${r.worstGrad.name} ` +
        `${r.worstGrad.ratio.toExponential(2)}`,
    );
  },
});
