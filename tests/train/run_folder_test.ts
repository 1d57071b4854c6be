// config.json and the run folder (issue 18, item 10): config.json records the crop actually
// used, a bad --init writes nothing, and a folder whose run died before its first checkpoint is
// refused by a fresh run (not overwritten with its log appended) and restarted by --resume.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { modelEntry } from "../../models/registry.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { train } from "../../train/trainer.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-runfolder-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 20, size: 32, seed: 4, val: 4, test: 4 });
const ds = await checkDataset(data);

const cfg = (out: string, extra: Record<string, unknown> = {}) =>
  TrainConfigSchema.parse({
    model: "fc_ef",
    data,
    out,
    iters: 2,
    batch: 2,
    size: 32,
    valEvery: 2,
    logEvery: 1,
    ...extra,
  });
const steps = (dir: string) =>
  Deno.readTextFileSync(join(dir, "log.jsonl")).trim().split("\n").map((l) => JSON.parse(l))
    .filter((r) => r.type === "train").map((r) => r.step);

Deno.test("config.json records the crop used, not a larger --size", async () => {
  const dir = join(root, "big");
  await train(cfg(dir, { size: 1000 }), { dataset: ds, quiet: true });
  const saved = JSON.parse(Deno.readTextFileSync(join(dir, "config.json")));
  assert.equal(saved.size, 32);
  assert.equal(saved.resume, undefined);
});

Deno.test("train --init with another model's checkpoint writes nothing", async () => {
  const other = join(root, "other.safetensors");
  const m = modelEntry("fc_siam_diff").create(0);
  await saveCheckpoint(m, other, { model: "fc_siam_diff" });
  m.dispose();
  const dir = join(root, "badinit");
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../cli/train.ts", import.meta.url).pathname,
      ...["--model", "fc_ef", "--data", data, "--out", dir, "--init", other, "--iters", "2"],
    ],
    stderr: "piped",
    stdout: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assert.notEqual(out.code, 0);
  assert.match(new TextDecoder().decode(out.stderr), /saved from model "fc_siam_diff"/);
  assert.ok(!existsSync(dir), "the run folder was created");
});

Deno.test("a run that died before its first checkpoint is refused, and --resume restarts it", async () => {
  const dir = join(root, "early");
  await train(cfg(dir, { iters: 4, valEvery: 4 }), { dataset: ds, quiet: true, stopAt: 2 });
  assert.deepEqual(steps(dir), [1, 2]);
  await assert.rejects(
    () => train(cfg(dir, { iters: 4, valEvery: 4 }), { dataset: ds, quiet: true }),
    /stopped before its first checkpoint: pass --resume/,
  );
  await train(cfg(dir, { iters: 4, valEvery: 4, resume: dir }), { dataset: ds, quiet: true });
  assert.deepEqual(steps(dir), [1, 2, 3, 4]);
});
