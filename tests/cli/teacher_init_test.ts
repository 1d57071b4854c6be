// op --teacher-init on the command line (each command's flags and body in this process, as
// cli/run.ts runInProcess runs them): a teacher alone before M_O stops naming M_O's member.json
// and the fix, writing nothing; the whole op trains M_O, then the teachers from its weights, and
// records the choice (partition.json, the teachers' config.json, results.json, the report); the
// folder then refuses scratch teachers (op, op --route-only) and distill a --teacher-init that
// disagrees; op --emit puts M_O's job before the teachers'.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { DISTILL_SPEC, distillCommand } from "../../cli/distill.ts";
import { OP_SPEC, opCommand } from "../../cli/op.ts";
import { runInProcess } from "../../cli/run.ts";
import { committedWeights } from "../../train/checkpoint_set.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-teacher-init-cli-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 32, size: 16, seed: 9, val: 4, test: 4 });
const dir = join(root, "run");
const budget = [
  ...["--model", "fc_ef", "--data", data, "--iters", "2", "--batch", "2", "--size", "16"],
  ...["--val-every", "2", "--log-every", "1", "--teachers", "2"],
];
const op = (...args: string[]) => runInProcess(OP_SPEC, opCommand, [...budget, ...args]);
const json = (f: string) => JSON.parse(Deno.readTextFileSync(join(dir, f)));

Deno.test("op --help documents --teacher-init", () => {
  assert.match(OP_SPEC.help, /--teacher-init scratch\|original\n\s+how each teacher starts/);
  assert.match(DISTILL_SPEC.help, /--teacher-init scratch\|original/);
});

Deno.test("op --member 1 --teacher-init original before M_O: stops naming member.json, writes nothing", async () => {
  await assert.rejects(
    () =>
      op("--out", dir, "--member", "1", "--teacher-init", "original", "--allow-software-adapter"),
    /small \(\S+teacher_small\) starts from M_O's weights \(--teacher-init original\), but \S+run\/original\/member\.json is missing: M_O has not finished .*train M_O first: deno task op --member 0/,
  );
  assert.ok(!existsSync(dir), "nothing written");
});

Deno.test("op --teacher-init original: the teachers start from M_O, and the choice is recorded", async () => {
  await op("--out", dir, "--teacher-init", "original");
  const mo = committedWeights(join(dir, "original"), "best");
  assert.ok(mo);
  assert.equal(json("partition.json").teacherInit, "original");
  for (const t of ["small", "large"]) assert.equal(json(`teacher_${t}/config.json`).init, mo, t);
  assert.equal(json("original/config.json").init, undefined);
  const results = json("results.json");
  assert.equal(results.teacherInit, "original");
  const note = `teachers: started from M_O's weights (${mo}), then trained on their partition ` +
    "(--teacher-init original; the paper trains them from scratch)";
  assert.ok(results.notes.includes(note), results.notes.join("\n"));
  assert.ok(Deno.readTextFileSync(join(dir, "report.html")).includes("teachers: started from M_O"));
  // The routing alone reuses every member.
  await op("--out", dir, "--teacher-init", "original", "--route-only");
});

Deno.test("a folder of teachers from M_O refuses scratch teachers; distill checks the flag", async () => {
  const before = Deno.readTextFileSync(join(dir, "partition.json"));
  const refusal =
    /run holds teachers trained with --teacher-init original \(teacher_small, teacher_large\), and this call asks for --teacher-init scratch; one folder holds teachers of one init: repeat --teacher-init original, or choose another --out/;
  await assert.rejects(() => op("--out", dir), refusal);
  await assert.rejects(() => op("--out", dir, "--route-only"), refusal);
  await assert.rejects(
    () =>
      op("--out", dir, "--member", "0", "--teacher-init", "scratch", "--allow-software-adapter"),
    refusal,
  );
  assert.equal(Deno.readTextFileSync(join(dir, "partition.json")), before, "record unchanged");
  await assert.rejects(
    () =>
      runInProcess(DISTILL_SPEC, distillCommand, [
        ...budget,
        ...["--from", dir, "--teacher-init", "scratch"],
      ]),
    /teacher_small, teacher_large\), and this call asks for --teacher-init scratch; give --teacher-init original or leave the flag out/,
  );
});

Deno.test("op --teacher-init original --emit slurm: M_O's job, then the teachers' array", async () => {
  const jobs = join(root, "jobs");
  await op("--out", join(root, "cluster"), "--teacher-init", "original", "--emit", "slurm", jobs);
  assert.match(Deno.readTextFileSync(join(jobs, "original.sbatch")), /--member 0\n$/);
  assert.match(Deno.readTextFileSync(join(jobs, "teachers.sbatch")), /#SBATCH --array=1-2\n/);
  assert.match(
    Deno.readTextFileSync(join(jobs, "distill.sbatch")),
    /deno task distill .*--teacher-init original/,
  );
  assert.match(
    Deno.readTextFileSync(join(jobs, "submit.sh")),
    /original\.sbatch\) && j1=\$\(sbatch --parsable --dependency=afterok:\$\{j0%%;\*\} \S+teachers\.sbatch\)/,
  );
  assert.ok(!existsSync(join(jobs, "members.sbatch")));
});
