// The Slurm jobs op --emit writes, run for real: a one-node cluster on localhost (munged,
// slurmctld, slurmd; tests/cli/slurm_cluster.ts, installed from Debian when missing) runs the
// member array of a tiny O-P (M_O + 3 teachers, FC-EF, 2 iterations at 16 px, the software
// adapter allowed) and the dependent distillation job; the results equal those of the
// single-process op + distill on the same data and seeds, weights byte for byte (there the
// student trains alone first, with distill --lambda-index 0). The emitted
// scripts leave out their --gres line here (--gres none): the test cluster has no GPUs. With
// --teacher-init original, M_O's job runs first and the teachers' array, once it succeeded,
// starts from M_O's weights.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { writeSynthDataset } from "../../data/synth.ts";
import { ensureSlurm, startCluster, waitForJobs } from "./slurm_cluster.ts";
import { tempDir } from "../temp.ts";

const REPO = new URL("../..", import.meta.url).pathname;
const MEMBERS = ["original", "teacher_small", "teacher_medium", "teacher_large", "student_0.0001"];

async function cli(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO, "cli", `${cmd}.ts`), ...args],
    env: { NO_COLOR: "1", ...env },
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  const r = { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
  assert.equal(r.code, 0, `${cmd} ${args.join(" ")}:\n${r.stderr}`);
  return r;
}

async function submit(line: string, env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command("bash", { args: ["-c", line], env }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `submit failed: ${text}`);
  return text;
}

Deno.test("the emitted Slurm array and its afterok distillation give the single-process results", async () => {
  const why = await ensureSlurm();
  if (why) {
    console.log(`skipped: ${why}`);
    return;
  }
  const root = await tempDir({ prefix: "cd-slurm-" });
  const data = join(root, "data");
  await writeSynthDataset({ out: data, pairs: 24, size: 16, seed: 9, val: 4, test: 4 });
  const budget = [
    ...["--model", "fc_ef", "--data", data, "--iters", "2", "--batch", "2", "--size", "16"],
    ...["--val-every", "2", "--log-every", "1"],
  ];
  const cluster = await startCluster();
  try {
    const jobs = join(root, "jobs"), viaSlurm = join(root, "slurm");
    const emitted = await cli("op", [
      ...budget,
      ...["--out", viaSlurm, "--student-iters", "2", "--gres", "none"],
      ...["--allow-software-adapter", "--emit", "slurm", jobs],
    ]);
    const line = emitted.stdout.trim();
    assert.equal(Deno.readTextFileSync(join(jobs, "submit.sh")).trim().split("\n").at(-1), line);
    // The jobs run `deno task` with the submitter's environment (sbatch exports it).
    const env = {
      ...cluster.env,
      PATH: `${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}`,
      NO_COLOR: "1",
    };
    const said = await submit(line, env);
    const ids = /submitted: members=(\d+) distill=(\d+)/.exec(said);
    assert.ok(ids, said);
    await waitForJobs(env, 150);
    const logs = join(jobs, "logs");
    const taskLogs = [0, 1, 2, 3].map((k) => join(logs, `members_${ids[1]}_${k}.log`));
    for (const f of [...taskLogs, join(logs, `distill_${ids[2]}.log`)]) {
      const text = Deno.readTextFileSync(f);
      // Every job names its adapter: vendor, device, driver.
      assert.match(text, /^adapter: .*vendor .*, device .*, driver /m, f);
    }
    assert.match(Deno.readTextFileSync(taskLogs[2]), /member 2 \(medium\): step 2/);
    for (const m of MEMBERS) {
      const marker = JSON.parse(Deno.readTextFileSync(join(viaSlurm, m, "member.json")));
      assert.equal(marker.step, 2, m);
      assert.match(marker.configHash, /^[0-9a-f]{64}$/);
    }
    assert.ok(existsSync(join(viaSlurm, "report.html")));

    // Resubmitted, the finished members are no-ops.
    const again = await submit(`sbatch --parsable ${join(jobs, "members.sbatch")}`, env);
    await waitForJobs(env, 60);
    const id = again.trim().split(";")[0];
    assert.match(
      Deno.readTextFileSync(join(logs, `members_${id}_3.log`)),
      /large: finished already with this configuration/,
    );

    // The same experiment in one process each: op, then distill; its student alone first
    // (distill --lambda-index 0, as an array task of a λ grid would), so the unit path of the
    // students is held to the single-process path as well.
    const single = join(root, "single");
    await cli("op", [...budget, "--out", single]);
    const student = [...budget, "--from", single, "--iters", "2", "--lambda", "0.0001"];
    const alone = await cli("distill", [
      ...student,
      "--lambda-index",
      "0",
      "--allow-software-adapter",
    ]);
    assert.match(alone.stderr, /student λ=0\.0001: best validation mIoU/);
    const full = await cli("distill", student);
    assert.match(full.stderr, /student λ=0\.0001: finished already with this configuration/);
    assert.deepEqual(
      JSON.parse(Deno.readTextFileSync(join(viaSlurm, "results.json"))),
      JSON.parse(Deno.readTextFileSync(join(single, "results.json"))),
    );
    for (const m of MEMBERS) {
      const a = Deno.readFileSync(join(viaSlurm, m, "best.safetensors"));
      const b = Deno.readFileSync(join(single, m, "best.safetensors"));
      assert.ok(a.length === b.length && a.every((x, i) => x === b[i]), `${m}: weights differ`);
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("with --teacher-init original, M_O's job runs before the teachers' array, which starts from it", async () => {
  const why = await ensureSlurm();
  if (why) {
    console.log(`skipped: ${why}`);
    return;
  }
  const root = await tempDir({ prefix: "cd-slurm-init-" });
  const data = join(root, "data");
  await writeSynthDataset({ out: data, pairs: 24, size: 16, seed: 9, val: 4, test: 4 });
  const cluster = await startCluster();
  try {
    const jobs = join(root, "jobs"), out = join(root, "run");
    const emitted = await cli("op", [
      ...["--model", "fc_ef", "--data", data, "--iters", "2", "--batch", "2", "--size", "16"],
      ...["--val-every", "2", "--teachers", "2", "--teacher-init", "original"],
      ...["--out", out, "--student-iters", "1", "--gres", "none"],
      ...["--allow-software-adapter", "--emit", "slurm", jobs],
    ]);
    const env = {
      ...cluster.env,
      PATH: `${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}`,
      NO_COLOR: "1",
    };
    const said = await submit(emitted.stdout.trim(), env);
    const ids = /submitted: original=(\d+) teachers=(\d+) distill=(\d+)/.exec(said);
    assert.ok(ids, said);
    await waitForJobs(env, 150);
    const logs = join(jobs, "logs");
    assert.match(
      Deno.readTextFileSync(join(logs, `original_${ids[1]}.log`)),
      /member 0 \(original\)/,
    );
    const mo = JSON.parse(Deno.readTextFileSync(join(out, "original", "member.json")));
    for (const [k, t] of [[1, "small"], [2, "large"]] as const) {
      const log = Deno.readTextFileSync(join(logs, `teachers_${ids[2]}_${k}.log`));
      assert.match(log, new RegExp(`${t}: training on \\d+ pairs from M_O's weights`));
      const teacher = JSON.parse(Deno.readTextFileSync(join(out, `teacher_${t}`, "member.json")));
      // Started once M_O had finished.
      assert.ok(teacher.finishedAt > mo.finishedAt, t);
      const cfg = JSON.parse(Deno.readTextFileSync(join(out, `teacher_${t}`, "config.json")));
      assert.match(cfg.init, new RegExp(`${out}/original/checkpoints/step_2/model\\.safetensors$`));
    }
    const results = JSON.parse(Deno.readTextFileSync(join(out, "results.json")));
    assert.equal(results.teacherInit, "original");
  } finally {
    await cluster.stop();
  }
});
