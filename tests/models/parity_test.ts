// Parity with the original implementations: the authors' TinyCD checkpoint and seeded FC-Siam
// weights must reproduce the outputs that the original PyTorch code computed (../shared/fixtures).

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { listSplit } from "../../data/dataset.ts";
import { loadSample } from "../../data/sample.ts";
import { TinyCD } from "../../models/tinycd.ts";
import { fcParity, FIX, maxAbsDiff, present, run } from "./fc_parity.ts";

Deno.test({
  name: "FC-Siam-diff reproduces the original code's log-probabilities",
  ignore: !present,
  fn: async () => {
    await initDevice();
    await fcParity("diff", "fc_siam_diff_seed0");
  },
});

Deno.test({
  name: "FC-EF and FC-Siam-conc reproduce the original code's log-probabilities",
  ignore: !present,
  fn: async () => {
    await initDevice();
    await fcParity("ef", "fc_ef_seed0");
    await fcParity("conc", "fc_siam_conc_seed0");
  },
});

Deno.test({
  name: "TinyCD with the authors' LEVIR-CD weights reproduces their probabilities and F1",
  ignore: !present,
  fn: async () => {
    await initDevice();
    const ref = readSafetensors(`${FIX}weights/tinycd_levir.reference.safetensors`);
    const names = [...ref.keys()].map((k) => k.replace(/^prob\./, ""));
    const model = new TinyCD().eval();
    loadCheckpoint(model, `${FIX}weights/tinycd_levir.safetensors`);
    const outs = await run(model, names, "sigmoid");
    let tp = 0, fp = 0, fn = 0;
    const pairs = await listSplit(FIX + "levir-cd");
    for (const name of names) {
      const prob = outs.get(name)!;
      const d = maxAbsDiff(prob, ref.get(`prob.${name}`)!.data);
      assert.ok(d <= 1e-4, `tinycd ${name}: max |Δ prob| ${d}`);
      const label = (await loadSample(pairs.find((p) => p.name === name)!)).label;
      for (let i = 0; i < prob.length; i++) {
        const p = prob[i] > 0.5, l = label[i] === 1;
        if (p && l) tp++;
        else if (p) fp++;
        else if (l) fn++;
      }
    }
    const f1 = (2 * tp) / (2 * tp + fp + fn);
    assert.ok(Math.abs(f1 - 0.9277) <= 0.001, `pooled F1 ${f1} (TP ${tp}, FP ${fp}, FN ${fn})`);
    model.dispose();
  },
});
