// HANet and LightCDNet-s through the real trainer with their registry recipes (AdamW; LightCDNet's
// OHEM decode loss plus its auxiliary head's 0.4 × CE through auxLoss): a short run on synthetic
// 64² pairs finishes with a finite loss, checkpoints that load back into the registry's model
// (the auxiliary head's weights included), and an evaluation of them.

import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { trainsAndEvaluates } from "./recipe_smoke.ts";

await initDevice();
const root = await Deno.makeTempDir({ prefix: "cd-hanet-lightcdnet-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 12, size: 64, seed: 9, val: 2, test: 2 });
const ds = await checkDataset(data);

for (const name of ["lightcdnet_s", "hanet"]) {
  Deno.test(`${name} trains with its Open-CD recipe and evaluates from its checkpoint`, () =>
    trainsAndEvaluates(name, { data, ds, root, iters: 2, size: 64 }));
}
