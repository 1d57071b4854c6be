// Issue 18 item 13: progress from the first second. A training command names the adapter, says it
// is checking the dataset, prints the check's summary (warning when validation has fewer than 10
// pairs) and "compiling kernels" before the first step; on a terminal the progress line is
// rewritten after every step.

import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSynthDataset } from "../../data/synth.ts";
import type { TrainConfig } from "../../train/config.ts";
import { checkedDataset } from "../../train/experiment.ts";
import { MIN_VAL_PAIRS, Progress } from "../../train/progress.ts";
import { writeSplit } from "../data/make_pairs.ts";
import { tempDir } from "../temp.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("progress: train says adapter, check, summary, small-val warning, compiling, in that order", async () => {
  const dir = await tempDir({ prefix: "cd_progress_" });
  try {
    const data = join(dir, "data");
    await writeSynthDataset({ out: data, pairs: 12, size: 32, seed: 1, val: 3, test: 0 });
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "cli/train.ts",
        ...["--model", "fc_ef", "--data", data, "--out", join(dir, "run")],
        ...["--iters", "2", "--batch", "2", "--size", "32", "--val-every", "2", "--log-every", "1"],
      ],
      cwd: ROOT,
      env: { XDG_RUNTIME_DIR: "/tmp" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, err);
    const lines = err.split("\n");
    const at = (re: RegExp) => {
      const i = lines.findIndex((l) => re.test(l));
      assert.ok(i >= 0, `no line matching ${re} in:\n${err}`);
      return i;
    };
    const order = [
      at(/^adapter: /),
      at(/^checking .*data: reading every pair once$/),
      at(/^dataset .*data: 9 train, 3 val, 0 test pairs; all checked$/),
      at(/^warning: only 3 validation pairs: .*use at least 10/),
      at(/^fc_ef compiling kernels and running step 1/),
      at(/^fc_ef step 1 done after /),
      at(/^fc_ef 2\/2 /),
    ];
    assert.deepStrictEqual([...order].sort((x, y) => x - y), order, err);
    assert.equal(lines[0].startsWith("adapter: "), true, err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("progress: on a terminal every step rewrites the line; elsewhere only log lines", async () => {
  assert.equal(MIN_VAL_PAIRS, 10);
  for (const tty of [true, false]) {
    const out: string[] = [];
    const p = new Progress(5, 0, "m", false, tty, (t) => out.push(t));
    p.begin();
    p.tick(1);
    await new Promise((r) => setTimeout(r, 300));
    p.tick(2);
    await new Promise((r) => setTimeout(r, 300));
    p.tick(3);
    const text = out.join("");
    assert.match(text, /m compiling kernels and running step 1/);
    assert.match(text, /m step 1 done after 0m0\ds/);
    if (tty) {
      const clear = "\r\u001b[2K"; // carriage return + erase line: rewritten in place
      assert.ok(text.includes(`${clear}m 2/5 `), JSON.stringify(text));
      assert.ok(text.includes(`${clear}m 3/5 `), JSON.stringify(text));
      assert.match(text, /m 2\/5 +[\d.]+ it\/s +ETA /);
    } else {
      assert.doesNotMatch(text, /m [23]\/5/); // no per-step lines in a log file
    }
    p.update(4, 0.5);
    assert.match(out.at(-1)!, /m 4\/5 .* loss 0\.5000/);
  }
});

Deno.test("progress: the experiment's check prints the summary and needs a test split", async () => {
  const root = await tempDir({ prefix: "cd_exp_check_" });
  try {
    await writeSplit(join(root, "train"), 4);
    const logged: string[] = [];
    const cfg = { data: root, valCount: 1, workers: 1 } as TrainConfig;
    await assert.rejects(
      checkedDataset(cfg, (l) => logged.push(l)),
      /test\/ is missing or empty, and O-P \/ MTKD are evaluated on the test split/,
    );
    assert.deepStrictEqual(logged.slice(0, 1), [`checking ${root}: reading every pair once`]);
    assert.ok(
      logged.includes(
        `dataset ${root}: 3 train, 1 val (the first pairs of train/), 0 test pairs; all checked`,
      ),
      logged.join("\n"),
    );
    assert.ok(
      logged.some((l) => l.startsWith("warning: only 1 validation pair:")),
      logged.join("\n"),
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
