// STANet and ChangeStar through the real trainer with their registry recipes: a short run on
// synthetic 64² pairs finishes with a finite loss, checkpoints that load back into the
// registry's model, and an evaluation of them. STANet trains through its own loss (BCL on the
// distance map) and, as an MTKD student, matches a teacher's distance map; ChangeStar FarSeg's
// recipe batch (16) is the train command's default.

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { modelEntry } from "../../models/registry.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { teacherLogits } from "../../train/distill.ts";
import { resolveTrainConfig } from "../../train/run_config.ts";
import { train } from "../../train/trainer.ts";
import { trainsAndEvaluates } from "./recipe_smoke.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-stanet-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 12, size: 64, seed: 9, val: 2, test: 2 });
const ds = await checkDataset(data);

const config = (name: string, out: string) =>
  TrainConfigSchema.parse({
    model: name,
    data,
    out,
    iters: 2,
    batch: 2,
    size: 64,
    valEvery: 2,
    logEvery: 1,
  });

for (const name of ["stanet_base_r18", "changestar_upernet_r18", "changestar_farseg_r18"]) {
  Deno.test(`${name} trains with its Open-CD recipe and evaluates from its checkpoint`, () =>
    trainsAndEvaluates(name, { data, ds, root, iters: 2, size: 64 }));
}

Deno.test("stanet_base_r18 distils from a teacher's distance map", async () => {
  const teacher = modelEntry("stanet_base_r18").create(3);
  teacher.eval();
  const res = await train(config("stanet_base_r18", join(root, "student")), {
    dataset: ds,
    quiet: true,
    distill: {
      lambda: 5e-3,
      teacher: (a, b, batch) => teacherLogits([teacher], () => 0, a, b, batch.size),
    },
  });
  assert.ok(res.losses.every((l) => Number.isFinite(l.loss)));
  teacher.dispose();
});

Deno.test("the recipe's batch is the train command's default; a batch below minBatch is refused", async () => {
  const flags = (model: string, batch?: number) => ({ model, data, out: join(root, "x"), batch });
  const given = new Set(["model", "data", "out"]);
  const farseg = await resolveTrainConfig(flags("changestar_farseg_r18"), given);
  assert.equal(farseg.batch, 16);
  const upernet = await resolveTrainConfig(flags("changestar_upernet_r18"), given);
  assert.equal(upernet.batch, 8);
  const typed = await resolveTrainConfig(
    flags("changestar_farseg_r18", 4),
    new Set([...given, "batch"]),
  );
  assert.equal(typed.batch, 4);
  await assert.rejects(
    resolveTrainConfig(flags("changestar_upernet_r18", 1), new Set([...given, "batch"])),
    /batch 2 or more/,
  );
});
