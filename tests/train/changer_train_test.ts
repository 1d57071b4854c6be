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
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import { modelEntry } from "../../models/registry.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { evaluateModel } from "../../train/evaluate.ts";
import { checkTrainBatch } from "../../train/model_size.ts";
import { train } from "../../train/trainer.ts";

await initDevice();
const root = await Deno.makeTempDir({ prefix: "cd-changer-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 12, size: 64, seed: 11, val: 2, test: 2 });
const ds = await checkDataset(data);

for (const name of ["changer_ex_r18", "changer_ex_s50"]) {
  Deno.test(`${name} trains with its Open-CD recipe and evaluates from its checkpoint`, async () => {
    const out = join(root, name);
    const cfg = TrainConfigSchema.parse({
      model: name,
      data,
      out,
      iters: 2,
      batch: 2,
      size: modelEntry(name).minSize ?? 32,
      valEvery: 2,
      logEvery: 1,
    });
    const res = await train(cfg, { dataset: ds, quiet: true });
    assert.equal(res.lastStep, 2);
    assert.ok(res.losses.length === 2 && res.losses.every((l) => Number.isFinite(l.loss)));
    assert.ok(res.best && Number.isFinite(res.best.mIoU), "no validation ran");
    const model = modelEntry(name).create(1);
    loadCheckpoint(model, join(out, "best.safetensors"), { expectModel: name });
    const { report } = await evaluateModel(model, ds.test, { batch: 2, tile: 64, overlap: 0 });
    assert.ok(report.perImage.mIoU >= 0 && report.perImage.mIoU <= 1);
    model.dispose();
  });
}

Deno.test("changer_ex_s50 refuses a training batch of 1 (split attention's pooled BatchNorm)", () => {
  assert.throws(() => checkTrainBatch("changer_ex_s50", 1), /at least 2 images per batch/);
  checkTrainBatch("changer_ex_s50", 2);
  checkTrainBatch("changer_ex_r18", 1);
});
