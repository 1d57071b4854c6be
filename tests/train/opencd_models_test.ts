// The Open-CD transformer detectors through the real trainer with their registry recipes (AdamW
// parameter groups, Changer's OHEM loss and augmentation): a short run on synthetic 64² pairs
// (MiT needs sides divisible by 32) finishes with a finite loss, checkpoints that load back into
// the registry's model, and an evaluation of them.

import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { trainsAndEvaluates } from "./recipe_smoke.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-opencd-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 16, size: 64, seed: 9, val: 4, test: 4 });
const ds = await checkDataset(data);

for (const name of ["bit_r18", "changeformer_mit_b0", "changer_ex_mit_b0"]) {
  Deno.test(`${name} trains with its Open-CD recipe and evaluates from its checkpoint`, () =>
    trainsAndEvaluates(name, { data, ds, root, iters: 3, size: 64 }));
}
