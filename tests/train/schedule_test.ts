import assert from "node:assert/strict";
import { defaultWarmup, lrAt } from "../../train/schedule.ts";
import { parseConfigObject, TrainConfigSchema } from "../../train/config.ts";

Deno.test("warm-up rises linearly from 1e-6, then the LR decays linearly to 0", () => {
  const s = { lr: 1e-3, iters: 100, warmup: 10, kind: "linear" as const };
  assert.equal(lrAt(s, 0), 1e-6);
  assert.ok(Math.abs(lrAt(s, 5) - (1e-6 + (1e-3 - 1e-6) / 2)) < 1e-12);
  assert.equal(lrAt(s, 10), 1e-3);
  assert.ok(Math.abs(lrAt(s, 55) - 0.5e-3) < 1e-12);
  assert.equal(lrAt(s, 100), 0);
  const c = { ...s, kind: "cosine" as const };
  assert.ok(Math.abs(lrAt(c, 55) - 0.5e-3) < 1e-12);
  assert.ok(lrAt(c, 30) > lrAt(s, 30));
});

Deno.test("short runs scale the paper's 1k warm-up to 10 %", () => {
  assert.equal(defaultWarmup(200_000), 1000);
  assert.equal(defaultWarmup(300), 30);
});

Deno.test("config files are strict: unknown keys and bad values are named", () => {
  assert.throws(
    () => parseConfigObject({ iters: 10, itres: 5 }, "c.json"),
    /c\.json: unknown key\(s\) itres/,
  );
  assert.throws(() => parseConfigObject({ batch: -1 }, "c.json"), /"batch"/);
  const ok = parseConfigObject({ iters: 10, schedule: "cosine" }, "c.json");
  assert.deepEqual(ok, { iters: 10, schedule: "cosine" });
  const full = TrainConfigSchema.parse({ model: "tinycd", data: "d", out: "o" });
  assert.equal(full.batch, 8);
  assert.equal(full.iters, 2000);
});
