// HANet and LightCDNet-s through the real trainer with their registry recipes (AdamW; LightCDNet's
// OHEM decode loss plus its auxiliary head's 0.4 × CE through auxLoss): a short run on synthetic
// 64² pairs finishes with a finite loss, checkpoints that load back into the registry's model
// (the auxiliary head's weights included), and an evaluation of them.

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import { modelEntry } from "../../models/registry.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { evaluateModel } from "../../train/evaluate.ts";
import { train } from "../../train/trainer.ts";

await initDevice();
const root = await Deno.makeTempDir({ prefix: "cd-hanet-lightcdnet-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 12, size: 64, seed: 9, val: 2, test: 2 });
const ds = await checkDataset(data);

for (const name of ["lightcdnet_s", "hanet"]) {
  Deno.test(`${name} trains with its Open-CD recipe and evaluates from its checkpoint`, async () => {
    const out = join(root, name);
    const cfg = TrainConfigSchema.parse({
      model: name,
      data,
      out,
      iters: 2,
      batch: 2,
      size: 64,
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
