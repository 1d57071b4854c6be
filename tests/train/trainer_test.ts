// The trainer on a tiny synthetic dataset: training improves validation mIoU, an interrupted
// run resumed from its checkpoint follows the uninterrupted run's loss curve, parameters the loss
// does not reach stay as initialised (torch's AdamW skips a None grad), bad configs fail.

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { modelEntry } from "../../models/registry.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { evaluateModel } from "../../train/evaluate.ts";
import { train } from "../../train/trainer.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-trainer-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 72, size: 32, seed: 5, val: 12, test: 12 });
const ds = await checkDataset(data);

const base = (out: string, extra: Record<string, unknown> = {}) =>
  TrainConfigSchema.parse({
    model: "fc_ef",
    data,
    out,
    iters: 24,
    batch: 4,
    size: 32,
    valEvery: 12,
    logEvery: 1,
    ...extra,
  });

function losses(runDir: string): number[] {
  return Deno.readTextFileSync(join(runDir, "log.jsonl")).trim().split("\n").map((l) =>
    JSON.parse(l)
  ).filter((r) => r.type === "train").map((r) => r.loss);
}

Deno.test("a short run improves validation mIoU over the untrained model", async () => {
  const model = modelEntry("fc_ef").create(0);
  const before = (await evaluateModel(model, ds.val, { batch: 4, tile: 32, overlap: 4 })).report;
  model.dispose();
  const res = await train(base(join(root, "improve")), { dataset: ds, quiet: true });
  assert.ok(res.best, "no validation ran");
  const after = res.best!.mIoU;
  assert.ok(
    after > before.perImage.mIoU * 100 + 5,
    `val mIoU ${before.perImage.mIoU * 100} → ${after}`,
  );
  const first = res.losses.slice(0, 4).reduce((s, l) => s + l.loss, 0) / 4;
  const last = res.losses.slice(-4).reduce((s, l) => s + l.loss, 0) / 4;
  assert.ok(last < first, `loss ${first} → ${last}`);
  for (const f of ["best.safetensors", "last.safetensors", "config.json", "checkpoint.json"]) {
    assert.ok(Deno.statSync(join(res.runDir, f)).isFile, f);
  }
});

Deno.test("resume continues an interrupted run exactly", async () => {
  const cfg = { iters: 8, valEvery: 4 };
  const full = join(root, "full"), cut = join(root, "cut");
  await train(base(full, cfg), { dataset: ds, quiet: true });
  await train(base(cut, cfg), { dataset: ds, quiet: true, stopAt: 4 });
  assert.equal(losses(cut).length, 4);
  await train(base(cut, { ...cfg, resume: cut }), { dataset: ds, quiet: true });
  const a = losses(full), b = losses(cut);
  assert.equal(b.length, 8);
  for (let i = 0; i < 8; i++) {
    assert.ok(
      Math.abs(a[i] - b[i]) <= 1e-6 * Math.max(1, Math.abs(a[i])),
      `step ${i + 1}: ${a[i]} vs ${b[i]}`,
    );
  }
});

Deno.test("HANet's unused c1..c4_conv keep their initial weights and no moments through training", async () => {
  // Built upstream but never called: their .grad stays None, which torch's AdamW skips (no decay).
  const res = await train(base(join(root, "hanet"), { model: "hanet", iters: 2, valEvery: 2 }), {
    dataset: ds,
    quiet: true,
  });
  const model = modelEntry("hanet").create(0);
  const weights = readSafetensors(join(res.runDir, "last.safetensors"));
  const optim = readSafetensors(join(res.runDir, "checkpoints", "step_2", "optim.safetensors"));
  const skipped = Array.from(optim.get("skipped_steps")!.data as ArrayLike<number>);
  let unused = 0, moved = 0;
  for (const [i, [name, t]] of model.namedParameters().entries()) {
    const before = Array.from(await t.read());
    const after = Array.from(weights.get(name)!.data as ArrayLike<number>);
    if (/^backbone\.c[1-4]_conv\./.test(name)) {
      unused++;
      assert.deepEqual(after, before, `${name} changed`);
      assert.equal(skipped[i], 2, `${name}: skipped steps`);
      for (const k of [`exp_avg.${i}`, `exp_avg_sq.${i}`]) {
        const m = optim.get(k)!.data as ArrayLike<number>;
        assert.ok(Array.from(m).every((x) => x === 0), `${name}: ${k} not zero`);
      }
    } else {
      assert.equal(skipped[i], 0, `${name}: skipped steps`);
      if (after.some((x, j) => x !== before[j])) moved++;
    }
  }
  assert.equal(unused, 8);
  assert.ok(moved > 100, `only ${moved} reached parameters moved`);
  model.dispose();
});

Deno.test("a run folder that already holds a run is refused", async () => {
  const dir = join(root, "improve");
  await assert.rejects(
    () => train(base(dir), { dataset: ds, quiet: true }),
    /already holds a run: pass --resume/,
  );
});

Deno.test("the train command names a bad flag and an unknown config key", async () => {
  const cfgFile = join(root, "bad.json");
  await Deno.writeTextFile(cfgFile, JSON.stringify({ iters: 5, itres: 3 }));
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../../cli/train.ts", import.meta.url).pathname, ...args],
      stderr: "piped",
      stdout: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    return { code: out.code, err: new TextDecoder().decode(out.stderr) };
  };
  const a = await run(
    "--model",
    "fc_ef",
    "--data",
    data,
    "--out",
    join(root, "x"),
    "--config",
    cfgFile,
  );
  assert.notEqual(a.code, 0);
  assert.match(a.err, /bad\.json: unknown key\(s\) itres/);
  const b = await run(
    "--model",
    "fc_ef",
    "--data",
    data,
    "--out",
    join(root, "y"),
    "--iters",
    "-3",
  );
  assert.notEqual(b.code, 0);
  assert.match(b.err, /--iters/);
  const c = await run("--model", "nope", "--data", data, "--out", join(root, "z"));
  assert.match(c.err, /unknown model "nope"/);
});
