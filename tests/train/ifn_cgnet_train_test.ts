// IFN and CGNet through the real trainer with their registry recipes (deep supervision / the
// change prior's auxiliary loss, IFN's frozen encoder): a short run on synthetic 32² pairs
// finishes with a finite loss, checkpoints that load back into the registry's model (IFN's
// encoder as it started: never trained), and an evaluation of them at the model's threshold.

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { device, initDevice } from "../../engine/device.ts";
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import { modelEntry } from "../../models/registry.ts";
import { evalWindow, TrainConfigSchema } from "../../train/config.ts";
import { evaluateModel } from "../../train/evaluate.ts";
import { train, trainableParameters } from "../../train/trainer.ts";

await initDevice();
const root = await Deno.makeTempDir({ prefix: "cd-ifn-cgnet-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 8, size: 32, seed: 9, val: 2, test: 2 });
const ds = await checkDataset(data);

/** Whether the optimiser's parameter arena (one storage binding) fits this adapter: CGNet's
 * 33.7 M trainable parameters (135 MB) exceed a software adapter's 128 MiB. */
function arenaFits(name: string): boolean {
  const m = modelEntry(name).create(0);
  const bytes = trainableParameters(m, modelEntry(name)).reduce((s, t) => s + 4 * t.size, 0);
  m.dispose();
  const ok = bytes < device().limits.maxStorageBufferBindingSize;
  if (!ok) {
    console.log(`skipping ${name}: its ${bytes}-byte parameter arena exceeds the binding limit`);
  }
  return ok;
}

for (const name of ["ifn_vgg16", "cgnet_vgg16"]) {
  Deno.test({
    name: `${name} trains with its Open-CD recipe and evaluates from its checkpoint`,
    ignore: !arenaFits(name),
    fn: async () => {
      const out = join(root, name);
      const cfg = TrainConfigSchema.parse({
        model: name,
        data,
        out,
        iters: 2,
        batch: 2,
        size: 32,
        valEvery: 2,
        logEvery: 1,
        seed: 0,
      });
      const res = await train(cfg, { dataset: ds, quiet: true });
      assert.equal(res.lastStep, 2);
      assert.ok(res.losses.length === 2 && res.losses.every((l) => Number.isFinite(l.loss)));
      assert.ok(res.best && Number.isFinite(res.best.mIoU), "no validation ran");
      const model = modelEntry(name).create(1);
      loadCheckpoint(model, join(out, "best.safetensors"), { expectModel: name });
      if (name === "ifn_vgg16") {
        // The frozen encoder leaves the run as seed 0 built it, under both of its names.
        const fresh = modelEntry(name).create(0);
        const key = "backbone.encoder1.features.0.weight";
        const want = await fresh.stateDict().get(key)!.read();
        const sd = model.stateDict();
        assert.deepEqual(await sd.get(key)!.read(), want);
        assert.equal(sd.get(key), sd.get("backbone.encoder2.features.0.weight"));
        fresh.dispose();
      }
      const { report } = await evaluateModel(model, ds.test, evalWindow(cfg));
      assert.ok(report.perImage.mIoU >= 0 && report.perImage.mIoU <= 1);
      assert.equal(evalWindow(cfg).threshold, name === "ifn_vgg16" ? 0.3 : 0.5);
      model.dispose();
    },
  });
}
