// IFN and CGNet through the real trainer with their registry recipes (deep supervision / the
// change prior's auxiliary loss, IFN's frozen encoder): a short run on synthetic 32² pairs
// finishes with a finite loss, checkpoints that load back into the registry's model (IFN's
// encoder as it started: never trained), and an evaluation of them at the model's threshold.

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { modelEntry } from "../../models/registry.ts";
import { evalWindow } from "../../train/config.ts";
import { trainsAndEvaluates } from "./recipe_smoke.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-ifn-cgnet-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 8, size: 32, seed: 9, val: 2, test: 2 });
const ds = await checkDataset(data);

for (const name of ["ifn_vgg16", "cgnet_vgg16"]) {
  Deno.test({
    name: `${name} trains with its Open-CD recipe and evaluates from its checkpoint`,
    fn: () =>
      trainsAndEvaluates(name, {
        data,
        ds,
        root,
        iters: 2,
        size: 32,
        extra: { seed: 0 },
        window: (cfg) => {
          assert.equal(evalWindow(cfg).threshold, name === "ifn_vgg16" ? 0.3 : 0.5);
          return evalWindow(cfg);
        },
        inspect: async (model) => {
          if (name !== "ifn_vgg16") return;
          // The frozen encoder leaves the run as seed 0 built it, under both of its names.
          const fresh = modelEntry(name).create(0);
          const key = "backbone.encoder1.features.0.weight";
          const want = await fresh.stateDict().get(key)!.read();
          const sd = model.stateDict();
          assert.deepEqual(await sd.get(key)!.read(), want);
          assert.equal(sd.get(key), sd.get("backbone.encoder2.features.0.weight"));
          fresh.dispose();
        },
      }),
  });
}
