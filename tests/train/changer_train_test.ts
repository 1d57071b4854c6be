// ChangerEx ResNet-18 and ResNeSt-50 through the real trainer with their registry recipes
// (AdamW, OHEM, Changer's augmentation): a short run on synthetic pairs (crops of the model's
// smallest training size) finishes with a finite loss, its checkpoint loads back into the registry's model, and that
// model evaluates. The BN backbones train with each date as its own batch, as Open-CD does.
// (MiT-b1 differs from the MiT-b0 of opencd_models_test only in its widths.)

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { modelEntry } from "../../models/registry.ts";
import { checkTrainBatch } from "../../train/model_size.ts";
import { trainsAndEvaluates } from "./recipe_smoke.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-changer-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 12, size: 64, seed: 11, val: 2, test: 2 });
const ds = await checkDataset(data);

for (const name of ["changer_ex_r18", "changer_ex_s50"]) {
  Deno.test(`${name} trains with its Open-CD recipe and evaluates from its checkpoint`, () =>
    trainsAndEvaluates(name, {
      data,
      ds,
      root,
      iters: 2,
      size: modelEntry(name).minSize ?? 32,
    }));
}

Deno.test("changer_ex_s50 refuses a training batch of 1 (split attention's pooled BatchNorm)", () => {
  assert.throws(() => checkTrainBatch("changer_ex_s50", 1), /at least 2 images per batch/);
  checkTrainBatch("changer_ex_s50", 2);
  checkTrainBatch("changer_ex_r18", 1);
});
