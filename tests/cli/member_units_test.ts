// O-P members as separate units on the command line (op --member K): a member killed with
// kill -9 mid-training resumes when run again, to the weights of an uninterrupted run; op
// --route-only and distill refuse to start with a member missing and name it; a finished member
// run again is a no-op, with other settings it stops the call; a GPU job refuses the software
// adapter unless --allow-software-adapter is given.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice, isSoftwareAdapter, releaseDevice } from "../../engine/device.ts";
import { tempDir } from "../temp.ts";

const OP = new URL("../../cli/op.ts", import.meta.url).pathname;
const DISTILL = new URL("../../cli/distill.ts", import.meta.url).pathname;
const root = await tempDir({ prefix: "cd-members-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 24, size: 16, seed: 9, val: 4, test: 4 });
const budget = [
  ...["--model", "fc_ef", "--data", data, "--iters", "8", "--batch", "2", "--size", "16"],
  ...["--val-every", "1", "--log-every", "1"],
];
const dir = join(root, "run");

async function cli(file: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", file, ...args],
    env: { NO_COLOR: "1", ...env },
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

const same = (a: string, b: string) => {
  const x = Deno.readFileSync(a), y = Deno.readFileSync(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
};

Deno.test("a member killed with kill -9 resumes when run again; op and distill name it missing", async () => {
  const ref = join(root, "ref");
  const whole = await cli(OP, [
    ...budget,
    "--out",
    ref,
    "--member",
    "0",
    "--allow-software-adapter",
  ]);
  assert.equal(whole.code, 0, whole.stderr);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", OP, ...budget, "--out", dir, "--member", "0", "--allow-software-adapter"],
    stderr: "piped",
    stdout: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  let err = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  while (!/original val @2/.test(err)) {
    const { value, done } = await reader.read();
    if (done) break;
    err += value;
  }
  child.kill("SIGKILL");
  await reader.cancel();
  await child.status;
  assert.ok(!existsSync(join(dir, "original", "member.json")), "killed before its marker");

  const route = await cli(OP, [...budget, "--out", dir, "--route-only"]);
  assert.equal(route.code, 1);
  assert.match(
    route.stderr,
    /members missing:\n {2}original \(\S+original\): not finished \(no member\.json: interrupted, failed or still running\); run: deno task op --member 0/,
  );
  for (const [k, t] of [[1, "small"], [2, "medium"], [3, "large"]]) {
    assert.match(
      route.stderr,
      new RegExp(`${t} \\(\\S+teacher_${t}\\): not trained; run: deno task op --member ${k}`),
    );
  }
  assert.ok(!existsSync(join(dir, "results.json")));
  const distill = await cli(DISTILL, [...budget, "--from", dir]);
  assert.equal(distill.code, 1);
  assert.match(distill.stderr, /members missing:\n {2}original .*not finished/);

  const resumed = await cli(OP, [
    ...budget,
    "--out",
    dir,
    "--member",
    "0",
    "--allow-software-adapter",
  ]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /original: resuming on 16 pairs/);
  const marker = JSON.parse(Deno.readTextFileSync(join(dir, "original", "member.json")));
  assert.equal(marker.step, 8);
  assert.ok(
    same(join(dir, "original", "last.safetensors"), join(ref, "original", "last.safetensors")),
  );
});

Deno.test("a finished member run again is a no-op; with other settings it stops the call", async () => {
  const best = join(dir, "original", "best.safetensors");
  const before = Deno.statSync(best).mtime?.getTime();
  const again = await cli(OP, [...budget, "--out", dir, "--allow-software-adapter"], {
    SLURM_ARRAY_TASK_ID: "0",
  });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /original: finished already with this configuration/);
  assert.equal(Deno.statSync(best).mtime?.getTime(), before);
  const other = await cli(OP, [
    ...budget,
    ...["--out", dir, "--member", "0", "--seed", "3", "--allow-software-adapter"],
  ]);
  assert.equal(other.code, 1);
  assert.match(
    other.stderr,
    /original \(\S+original\) was trained with other settings .*seed 0 → 3/,
  );
});

Deno.test("a GPU job refuses a software adapter unless --allow-software-adapter", async () => {
  await initDevice();
  const software = isSoftwareAdapter();
  await releaseDevice();
  const member = await cli(OP, [...budget, "--out", join(root, "refused"), "--member", "1"]);
  const slurm = await cli(OP, [...budget, "--out", join(root, "refused")], { SLURM_JOB_ID: "7" });
  if (software) {
    for (const r of [member, slurm]) {
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^adapter: .*vendor .*, device .*, driver /m);
      assert.match(
        r.stderr,
        /software driver on the CPU .*ConstrainDevices=yes.*--allow-software-adapter/,
      );
    }
    assert.match(member.stderr, /member 1 \(from --member\) is a GPU job/);
    assert.match(slurm.stderr, /this is a Slurm job/);
    assert.ok(!existsSync(join(root, "refused")), "nothing written");
  } else console.log("hardware adapter: the refusal of a software one is not exercised");
  const index = await cli(DISTILL, [
    ...budget,
    ...["--from", dir, "--lambda-index", "3", "--allow-software-adapter"],
  ]);
  assert.equal(index.code, 1);
  assert.match(
    index.stderr,
    /--lambda-index 3: this call asks for 1 λ \(0\.0001\), indices 0\.\.0/,
  );
});
