// Issue 18 item 8 for predict on a folder without labels (its own A/B scan): symbolic links are
// followed and NAME.PNG is pair NAME, as in the dataset check.

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { PREDICT_HELP, PredictFlags, runPredict } from "../../cli/predict.ts";
import { initDevice } from "../../engine/device.ts";
import { saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { MODELS } from "../../models/registry.ts";
import { writePair } from "../data/make_pairs.ts";
import { tempDir } from "../temp.ts";

Deno.test("predict: unlabelled A/B with a symlinked image and a .PNG name", async () => {
  await initDevice();
  const tmp = await tempDir({ prefix: "cd_predict_odd_" });
  try {
    const data = join(tmp, "scene"), store = join(tmp, "store");
    for (const d of ["A", "B", "label"]) await Deno.mkdir(join(data, d), { recursive: true });
    await writePair(data, "1", { size: 32 });
    await writePair(data, "2", { size: 32 });
    await Deno.remove(join(data, "label"), { recursive: true });
    await Deno.mkdir(store);
    await Deno.rename(join(data, "A", "1.png"), join(store, "a1.png"));
    await Deno.symlink(join(store, "a1.png"), join(data, "A", "1.png"));
    await Deno.rename(join(data, "B", "2.png"), join(data, "B", "2.PNG"));
    const weights = join(tmp, "w.safetensors");
    const m = MODELS.fc_ef.create(0);
    await saveCheckpoint(m, weights, { model: "fc_ef" });
    m.dispose();
    const out = join(tmp, "out");
    const s = await runPredict(parseFlagsOrThrow(
      ["--quiet", `--weights=${weights}`, `--data=${data}`, `--out=${out}`],
      PredictFlags,
      { help: PREDICT_HELP },
    ));
    assert.equal(s.images, 2);
    assert.deepStrictEqual(s.failed, []);
    assert.deepStrictEqual([...Deno.readDirSync(out)].map((e) => e.name).sort(), [
      "1.png",
      "2.png",
    ]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
