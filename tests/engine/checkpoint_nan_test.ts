// Issue 18 item 9: a checkpoint holding NaN or infinite weights (a diverged run) is refused when
// loaded, naming its tensors, instead of evaluating to meaningless metrics without a word.

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadCheckpoint, saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { readSafetensors, type WriteEntry, writeSafetensors } from "../../engine/safetensors.ts";
import { MODELS } from "../../models/registry.ts";
import { initDevice } from "../util.ts";
import { tempDir } from "../temp.ts";

Deno.test("checkpoint: NaN / Infinity weights are refused naming the tensors", async () => {
  await initDevice();
  const dir = await tempDir({ prefix: "cd_nan_" });
  const model = MODELS.fc_ef.create(0);
  try {
    const good = join(dir, "good.safetensors"), bad = join(dir, "bad.safetensors");
    await saveCheckpoint(model, good, { model: "fc_ef" });
    const entries = readSafetensors(good);
    const out = new Map<string, WriteEntry>();
    for (const [k, e] of entries) {
      out.set(k, { dtype: e.dtype as WriteEntry["dtype"], shape: e.shape, data: e.data });
    }
    const w = Float32Array.from(entries.get("conv11.weight")!.data);
    w[3] = NaN;
    w[5] = NaN;
    out.set("conv11.weight", { dtype: "F32", shape: entries.get("conv11.weight")!.shape, data: w });
    const b = Float32Array.from(entries.get("conv11.bias")!.data);
    b[0] = Infinity;
    out.set("conv11.bias", { dtype: "F32", shape: entries.get("conv11.bias")!.shape, data: b });
    writeSafetensors(bad, out, entries.metadata);
    loadCheckpoint(model, good, { expectModel: "fc_ef" }); // the healthy file loads
    assert.throws(
      () => loadCheckpoint(model, bad, { expectModel: "fc_ef" }),
      /bad\.safetensors: 2 tensors hold NaN or infinite values: conv11\.weight \(2\), conv11\.bias \(1\); the run that wrote it diverged/,
    );
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
