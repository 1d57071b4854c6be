// A run survives a crash inside a checkpoint save: every file of a save lands by a rename, so
// making the k-th rename of the save at step 4 throw (as a kill -9 or a full disk would stop the
// process there) leaves the folder as the crash would. --resume must then finish with exactly
// the weights and loss log of the uninterrupted run, with no *.tmp-* leftovers. Ctrl-C (a real
// SIGINT to the train command) stops cleanly, keeps the last checkpoint and prints the resume
// command. Run folders of the earlier layout still resume.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { readSafetensors, writeSafetensors } from "../../engine/safetensors.ts";
import { committedState } from "../../train/checkpoint_set.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { train } from "../../train/trainer.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-ckpt-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 24, size: 32, seed: 3, val: 4, test: 4 });
const ds = await checkDataset(data);

const cfg = (out: string, extra: Record<string, unknown> = {}) =>
  TrainConfigSchema.parse({
    model: "fc_ef",
    data,
    out,
    iters: 6,
    batch: 2,
    size: 32,
    valEvery: 2,
    logEvery: 1,
    ...extra,
  });

const trainLog = (dir: string) =>
  Deno.readTextFileSync(join(dir, "log.jsonl")).trim().split("\n").map((l) => JSON.parse(l))
    .map(({ itPerSec: _i, elapsedS: _e, ...rest }) => rest);

function leftovers(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (/\.tmp/.test(e.name)) out.push(e.name);
    else if (e.isDirectory) out.push(...leftovers(join(dir, e.name)));
  }
  return out;
}

/** Run `fn` with Deno.renameSync throwing at the k-th rename after the step-4 val line is
 * logged (the save that follows it). */
async function crashingAt(k: number, fn: () => Promise<unknown>): Promise<void> {
  const rename = Deno.renameSync, write = Deno.writeTextFileSync;
  let armed = false, n = 0;
  const D = Deno as unknown as Record<string, unknown>;
  D.writeTextFileSync = (p: string | URL, text: string, o?: Deno.WriteFileOptions) => {
    write(p, text, o);
    if (/"type":"val","step":4/.test(text)) armed = true;
  };
  D.renameSync = (a: string | URL, b: string | URL) => {
    if (armed && ++n === k) throw new Error(`simulated crash at rename ${k}`);
    rename(a, b);
  };
  try {
    await assert.rejects(fn, /simulated crash/);
  } finally {
    D.renameSync = rename;
    D.writeTextFileSync = write;
  }
}

const full = join(root, "full");
await train(cfg(full), { dataset: ds, quiet: true });
const fullWeights = Deno.readFileSync(join(full, "last.safetensors"));

Deno.test("a crash at any point of a save leaves a run that resumes exactly", async () => {
  // 2: the weights are written, the optimiser state is not; 4: the step folder is in place, the
  // pointer is not; 5: committed, last/best not yet published.
  for (const k of [2, 4, 5]) {
    const dir = join(root, `crash${k}`);
    await crashingAt(k, () => train(cfg(dir), { dataset: ds, quiet: true }));
    await train(cfg(dir, { resume: dir }), { dataset: ds, quiet: true });
    assert.deepEqual(trainLog(dir), trainLog(full), `crash at rename ${k}: log.jsonl`);
    assert.ok(
      Deno.readFileSync(join(dir, "last.safetensors")).every((b, i) => b === fullWeights[i]),
      `crash at rename ${k}: final weights differ from the uninterrupted run`,
    );
    assert.deepEqual(leftovers(dir), [], `crash at rename ${k}: temporary files left`);
  }
});

Deno.test("a full disk during a save: the error says what the run keeps and how to go on, no partial step folder, --resume finishes exactly", async () => {
  const dir = join(root, "nospace");
  const writeFile = Deno.writeFileSync, write = Deno.writeTextFileSync;
  let armed = false;
  const D = Deno as unknown as Record<string, unknown>;
  D.writeTextFileSync = (p: string | URL, text: string, o?: Deno.WriteFileOptions) => {
    write(p, text, o);
    if (/"type":"val","step":4/.test(text)) armed = true;
  };
  // The optimiser state of the step-4 save meets a full disk (the weights were written).
  D.writeFileSync = (p: string | URL, data: Uint8Array, o?: Deno.WriteFileOptions) => {
    if (armed && /optim\.safetensors/.test(String(p))) {
      throw new Error(`No space left on device (os error 28): writefile '${p}'`);
    }
    writeFile(p, data, o);
  };
  try {
    await assert.rejects(
      () => train(cfg(dir), { dataset: ds, quiet: true }),
      (e: Error) => {
        assert.match(
          e.message,
          /checkpoint of step 4 not saved \(the run keeps its checkpoint of step 2\)/,
        );
        assert.match(e.message, /optim\.safetensors: cannot write: No space left on device/);
        assert.match(
          e.message,
          new RegExp(`free space on that disk, then continue with --resume ${dir}`),
        );
        return true;
      },
    );
  } finally {
    D.writeFileSync = writeFile;
    D.writeTextFileSync = write;
  }
  assert.deepEqual(leftovers(dir), [], "a partial step folder or temporary file left");
  assert.equal(committedState(dir)!.step, 2);
  await train(cfg(dir, { resume: dir }), { dataset: ds, quiet: true });
  assert.deepEqual(trainLog(dir), trainLog(full), "log.jsonl after --resume");
  assert.ok(
    Deno.readFileSync(join(dir, "last.safetensors")).every((b, i) => b === fullWeights[i]),
    "final weights differ from the uninterrupted run",
  );
});

Deno.test("Ctrl-C stops the train command after a step, keeps the checkpoint, names --resume", async () => {
  const dir = join(root, "sigint");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../cli/train.ts", import.meta.url).pathname,
      ...["--model", "fc_ef", "--data", data, "--out", dir, "--iters", "1000", "--batch", "2"],
      ...["--size", "32", "--val-every", "2", "--log-every", "1"],
    ],
    stderr: "piped",
    stdout: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let err = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  while (!/val @2/.test(err)) {
    const { value, done } = await reader.read();
    if (done) break;
    err += value;
  }
  child.kill("SIGINT");
  for (let r = await reader.read(); !r.done; r = await reader.read()) err += r.value;
  const status = await child.status;
  await child.stdout.cancel();
  assert.notEqual(status.code, 0, err);
  assert.match(err, /interrupted at step \d+; the last checkpoint \(step \d+\) is kept/);
  assert.match(err, new RegExp(`deno task train --resume ${dir}`));
  const committed = committedState(dir)!.step;
  assert.ok(committed >= 2 && committed % 2 === 0, `committed step ${committed}`);
  const res = await train(cfg(dir, { iters: 1000, resume: dir }), {
    dataset: ds,
    quiet: true,
    stopAt: committed + 1,
  });
  assert.equal(res.lastStep, committed + 1);
  const steps = trainLog(dir).filter((l) => l.type === "train").map((l) => l.step);
  assert.deepEqual(steps, Array.from({ length: committed + 1 }, (_, i) => i + 1));
});

/** Rewrite a run folder in the layout before checkpoint sets: top-level last, last.optim (no
 * metadata), best and state.json (written last). */
function toLegacy(dir: string, stateStep?: number): void {
  const s = committedState(dir)!;
  const step = join(dir, "checkpoints", `step_${s.step}`);
  const optim = readSafetensors(join(step, "optim.safetensors"));
  writeSafetensors(join(dir, "last.optim.safetensors"), optim as unknown as Map<string, never>);
  const state = { step: stateStep ?? s.step, best: s.best };
  Deno.writeTextFileSync(join(dir, "state.json"), JSON.stringify(state) + "\n");
  Deno.removeSync(join(dir, "checkpoint.json"));
  Deno.removeSync(join(dir, "checkpoints"), { recursive: true });
}

Deno.test("a run folder of the earlier layout resumes exactly; one cut inside a save is refused", async () => {
  const dir = join(root, "legacy");
  await train(cfg(dir), { dataset: ds, quiet: true, stopAt: 4 });
  toLegacy(dir);
  await train(cfg(dir, { resume: dir }), { dataset: ds, quiet: true });
  assert.deepEqual(trainLog(dir), trainLog(full));
  assert.ok(Deno.readFileSync(join(dir, "last.safetensors")).every((b, i) => b === fullWeights[i]));
  assert.ok(!existsSync(join(dir, "state.json")), "the old state.json is migrated");

  const cut = join(root, "legacy_cut");
  await train(cfg(cut), { dataset: ds, quiet: true, stopAt: 4 });
  toLegacy(cut, 2); // the old save wrote last (step 4) but died before state.json
  await assert.rejects(
    () => train(cfg(cut, { resume: cut }), { dataset: ds, quiet: true }),
    /stopped this run inside a save \(state\.json at step 2, last\.safetensors at step 4/,
  );
});

Deno.test("resume refuses other settings than the run's, naming them", async () => {
  const dir = join(root, "other");
  await train(cfg(dir), { dataset: ds, quiet: true, stopAt: 2 });
  await assert.rejects(
    () => train(cfg(dir, { resume: dir, batch: 4, seed: 1 }), { dataset: ds, quiet: true }),
    /trained with other settings than this call asks for \(batch 2 → 4, seed 0 → 1\)/,
  );
});

Deno.test("kill -9 of the train command during its saves leaves a run that resumes exactly", async () => {
  // A save at every step; the kill lands just after the step-3 validation line, in or near
  // that save.
  const dir = join(root, "kill9"), ref = join(root, "every");
  await train(cfg(ref, { valEvery: 1 }), { dataset: ds, quiet: true });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../cli/train.ts", import.meta.url).pathname,
      ...["--model", "fc_ef", "--data", data, "--out", dir, "--iters", "6", "--batch", "2"],
      ...["--size", "32", "--val-every", "1", "--log-every", "1"],
    ],
    stderr: "piped",
    stdout: "null",
    env: { NO_COLOR: "1" },
  }).spawn();
  let err = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  while (!/val @3/.test(err)) {
    const { value, done } = await reader.read();
    if (done) break;
    err += value;
  }
  child.kill("SIGKILL");
  await reader.cancel();
  await child.status;
  await train(cfg(dir, { valEvery: 1, resume: dir }), { dataset: ds, quiet: true });
  assert.deepEqual(trainLog(dir), trainLog(ref));
  const want = Deno.readFileSync(join(ref, "last.safetensors"));
  assert.ok(Deno.readFileSync(join(dir, "last.safetensors")).every((b, i) => b === want[i]));
  assert.deepEqual(leftovers(dir), []);
});
