// An experiment folder's members are reused only when trained with what is asked now (issue 18,
// item 12): another seed and batch in the same folder stop with a message naming each member
// and setting, `retrain` trains them again, and the report's budget notes come from the
// members' own config.json. The demo command refuses synthetic data made with other flags.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { TWO_TEACHERS } from "../../data/partition.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { runOpOnly } from "../../train/experiment.ts";
import { checkMembers, memberDiff } from "../../train/member_check.ts";
import { opMembers } from "../../train/op.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-members-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 40, size: 16, seed: 9, val: 6, test: 6 });
await checkDataset(data);
const cfg = (extra: Record<string, unknown> = {}) =>
  TrainConfigSchema.parse({
    model: "fc_ef",
    data,
    out: join(root, "exp"),
    iters: 2,
    batch: 4,
    size: 16,
    valEvery: 2,
    logEvery: 1,
    ...extra,
  });
const dir = join(root, "exp");
const notes = () => JSON.parse(Deno.readTextFileSync(join(dir, "results.json"))).notes as string[];

Deno.test("members trained with other settings stop O-P, or are retrained", async () => {
  await runOpOnly(cfg(), dir, TWO_TEACHERS, () => {});
  assert.ok(
    notes().includes("budget: M_O and each teacher 2 iterations, batch 4, crop 16, seed 0"),
  );
  await assert.rejects(
    () => runOpOnly(cfg({ seed: 5, batch: 2 }), dir, TWO_TEACHERS, () => {}),
    (e: Error) => {
      for (const m of ["original", "teacher_small", "teacher_large"]) {
        assert.match(e.message, new RegExp(`${join(dir, m)}: batch 4 → 2, seed 0 → 5`));
      }
      assert.match(e.message, /repeat the flags they were trained with/);
      return true;
    },
  );
  // Same settings: reused, no message.
  const ds = await checkDataset(data);
  const request = (c: ReturnType<typeof cfg>) =>
    opMembers(ds, TWO_TEACHERS, dir).map((m) => ({
      name: m.name,
      runDir: m.runDir,
      cfg: c,
      trainPairs: m.pairs,
      valPairs: ds.val,
    }));
  const log: string[] = [];
  const check = { retrain: true, hint: "", log: (s: string) => log.push(s) };
  await checkMembers(request(cfg()), check);
  assert.deepEqual(log, []);
  // Another λ or other data is caught by the run key even with the same flags.
  const student = { ...request(cfg())[0], lambda: 1e-4 };
  assert.deepEqual(await memberDiff(student), [
    "its training pairs, validation pairs or starting weights",
  ]);
  await checkMembers(request(cfg({ seed: 5, batch: 2 })), check);
  assert.equal(log.length, 3);
  assert.match(log[0], /original: trained with other settings \(batch 4 → 2, seed 0 → 5\)/);
  for (const m of ["original", "teacher_small", "teacher_large"]) {
    assert.ok(!existsSync(join(dir, m)), `${m} was not removed for retraining`);
  }
});

Deno.test("the demo refuses synthetic data made with other flags", async () => {
  const out = join(root, "demo");
  await writeSynthDataset({ out: join(out, "data"), pairs: 24, size: 16, seed: 0 });
  const run = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../cli/demo.ts", import.meta.url).pathname,
      ...["--out", out, "--pairs", "24", "--size", "16", "--seed", "5"],
    ],
    stderr: "piped",
    stdout: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assert.notEqual(run.code, 0);
  assert.match(
    new TextDecoder().decode(run.stderr),
    /was made with other flags \(was → now: --seed 0 → 5\)/,
  );
});
