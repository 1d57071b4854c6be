// --teacher-init original on the real engine and real files: a teacher starts from M_O's
// finished best weights (its parameters equal M_O's when it trains at a negligible LR, and its
// config.json and run key name M_O's checkpoint), refuses to start before M_O has finished
// (naming member.json and the fix), and a folder of the other init is refused, by the member
// check and by the folder check; op --teachers auto starts every K's teachers from the one M_O.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { TWO_TEACHERS } from "../../data/partition.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { modelEntry } from "../../models/registry.ts";
import { committedWeights } from "../../train/checkpoint_set.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { memberDiff } from "../../train/member_check.ts";
import { readMarker } from "../../train/member_marker.ts";
import { opRequests } from "../../train/member_requests.ts";
import { trainMember } from "../../train/member_unit.ts";
import { memberConfigOf } from "../../train/members.ts";
import { runOpAuto } from "../../train/op_auto.ts";
import { runConfig, runKey } from "../../train/run_key.ts";
import { checkTeacherInit } from "../../train/teacher_init.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-teacher-init-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 40, size: 16, seed: 9, val: 6, test: 6 });
const ds = await checkDataset(data);
const dir = join(root, "exp");
const base = TrainConfigSchema.parse({
  model: "fc_ef",
  data,
  out: dir,
  iters: 4,
  batch: 4,
  size: 16,
  valEvery: 4,
  logEvery: 1,
});
const run = { dataset: ds, log: () => {}, quiet: true, hint: "HINT" };
const [original, small] = opRequests(base, ds, TWO_TEACHERS, dir, "original");
// The teacher at a negligible LR: after training, its parameters are where it started.
const still = { ...small, cfg: { ...small.cfg, lr: 1e-12 } };

/** Largest |a − b| over the model's parameters (BatchNorm statistics left out: they move
 * with the data whatever the LR). */
function maxParamDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let d = 0;
  for (const [k, x] of a) {
    const y = b.get(k)!;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
  }
  return d;
}

async function params(file?: string): Promise<Map<string, Float32Array>> {
  const m = modelEntry("fc_ef").create(base.seed);
  const entries = file ? readSafetensors(file) : null;
  const out = new Map<string, Float32Array>();
  for (const [k, t] of m.namedParameters()) {
    out.set(k, entries ? entries.get(k)!.data as Float32Array : await t.read() as Float32Array);
  }
  m.dispose();
  return out;
}

Deno.test("a teacher from M_O before M_O has finished stops, naming member.json and the fix", async () => {
  await assert.rejects(
    () => trainMember(still, run),
    (e: Error) => {
      assert.match(
        e.message,
        /^small \(\S+teacher_small\) starts from M_O's weights \(--teacher-init original\), but \S+original\/member\.json is missing: M_O has not finished/,
      );
      assert.match(e.message, /train M_O first: deno task op --member 0 with the flags/);
      return true;
    },
  );
  assert.ok(!existsSync(small.runDir), "nothing written");
});

Deno.test("a teacher from M_O starts from M_O's best weights; its run key names them", async () => {
  await trainMember(original, run);
  await trainMember(still, run);
  const mo = committedWeights(original.runDir, "best")!;
  // Recorded: the teacher's config.json holds M_O's committed best file.
  assert.equal(memberConfigOf(small.runDir)!.init, mo);
  const fresh = await params(), start = await params(mo);
  const teacher = await params(committedWeights(small.runDir, "best")!);
  // M_O moved away from the fresh init, so the comparison below means something.
  assert.ok(maxParamDiff(fresh, start) > 1e-4, "M_O did not move");
  assert.ok(maxParamDiff(teacher, start) < 1e-6, `${maxParamDiff(teacher, start)}`);
  assert.ok(maxParamDiff(teacher, fresh) > 1e-4);
  // The run key hashes M_O's checkpoint: not the key of the same teacher from scratch.
  const key = (init?: string) =>
    runKey({
      cfg: runConfig({ ...still.cfg, init }, still.trainPairs),
      trainPairs: still.trainPairs,
      valPairs: still.valPairs,
    });
  const marker = readMarker(small.runDir)!;
  assert.equal(marker.configHash, await key(mo));
  assert.notEqual(marker.configHash, await key(undefined));
  // Run again: reused, nothing trains.
  assert.equal((await trainMember(still, run)).finishedAt, marker.finishedAt);
});

Deno.test("a folder of teachers from M_O is refused for scratch teachers, and named so", async () => {
  const [, scratch] = opRequests(base, ds, TWO_TEACHERS, dir, "scratch");
  const asScratch = { ...scratch, cfg: still.cfg };
  assert.deepEqual(await memberDiff(asScratch), ["teacher init original → scratch"]);
  await assert.rejects(
    () => trainMember(asScratch, run),
    /small \(\S+teacher_small\) was trained with other settings than this call asks for \(was → now\): teacher init original → scratch; HINT/,
  );
  assert.throws(
    () => checkTeacherInit(dir, TWO_TEACHERS, "scratch"),
    /exp holds teachers trained with --teacher-init original \(teacher_small\), and this call asks for --teacher-init scratch; one folder holds teachers of one init: repeat --teacher-init original, or choose another --out/,
  );
  checkTeacherInit(dir, TWO_TEACHERS, "original");
  // M_O gone (e.g. retrained with other settings): the teacher no longer matches.
  Deno.removeSync(join(original.runDir, "member.json"));
  assert.match(
    (await memberDiff(still))!.join(),
    /the M_O it starts from: \S+member\.json is missing/,
  );
});

Deno.test("op --teachers auto with teachers from M_O: each K's teachers start from the shared M_O", async () => {
  const auto = join(root, "auto");
  await runOpAuto(
    { ...base, iters: 2, valEvery: 2, out: auto },
    auto,
    ds,
    () => {},
    0,
    1,
    "original",
  );
  const mo = committedWeights(join(auto, "original"), "best")!;
  const k1 = join(auto, "k1");
  // Through k1/original, the link to the shared M_O: the same file.
  assert.equal(
    Deno.realPathSync(memberConfigOf(join(k1, "teacher_all"))!.init!),
    Deno.realPathSync(mo),
  );
  assert.equal(
    JSON.parse(Deno.readTextFileSync(join(k1, "partition.json"))).teacherInit,
    "original",
  );
  assert.equal(
    JSON.parse(Deno.readTextFileSync(join(auto, "results.json"))).teacherInit,
    "original",
  );
});
