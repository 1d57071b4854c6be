// Issue 18: commands that should agree. A missing required flag reads "--model is required" in
// every command (an enum flag said `"undefined" is not allowed`, train said "Invalid input:
// expected string"); every help text shows `deno task …`; a training crop the model cannot take
// (TinyCD --size 63) is refused at start-up, naming sizes that work.

import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { FlagError, parseFlagsOrThrow } from "../../cli/args.ts";
import { checkTrainSize } from "../../train/model_size.ts";
import { tempDir } from "../temp.ts";

const cliDir = new URL("../../cli/", import.meta.url).pathname;

async function run(file: string, ...args: string[]) {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(cliDir, file), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, err: new TextDecoder().decode(r.stderr) };
}

Deno.test("a missing required flag says '--NAME is required', enum flags included", () => {
  const schema = z.object({
    model: z.enum(["a", "b"]),
    data: z.string(),
    n: z.number().default(1),
  });
  try {
    parseFlagsOrThrow([], schema, { help: "" });
    assert.fail("expected a FlagError");
  } catch (e) {
    assert.ok(e instanceof FlagError);
    assert.equal(e.message, "--model is required\n--data is required");
  }
});

Deno.test("train: missing flags and a crop TinyCD cannot take are named at start-up", async () => {
  const tmp = await tempDir();
  try {
    const r = await run("train.ts");
    assert.notEqual(r.code, 0);
    assert.match(r.err, /--model is required/);
    assert.match(r.err, /--data is required/);
    assert.doesNotMatch(r.err, /Invalid input/);
    const out = join(tmp, "run");
    const s = await run("train.ts", "--model", "tinycd", "--data", tmp, "--out", out, "--size=63");
    assert.notEqual(s.code, 0);
    assert.match(
      s.err,
      /--size 63: tinycd needs a crop side that is a multiple of 16.*use 48 or 64/,
    );
    assert.deepStrictEqual([...Deno.readDirSync(tmp)], [], "nothing written");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("checkTrainSize: multiples of the divisor, at least minSize", () => {
  checkTrainSize("tinycd", 64);
  checkTrainSize("bit_r18", 40); // divisor 8
  assert.throws(() => checkTrainSize("fc_ef", 100), /multiple of 16.*use 96 or 112/);
  assert.throws(() => checkTrainSize("changeformer_mit_b0", 32), /at least 64; use 64/);
});

Deno.test("every command's help shows `deno task NAME`", async () => {
  for (const e of Deno.readDirSync(cliDir)) {
    const text = await Deno.readTextFile(join(cliDir, e.name));
    const usage = /Usage:\n((?: {2}.*\n)+)/.exec(text);
    if (!usage) continue; // helpers without a help text
    const name = e.name.replace(/\.ts$/, "");
    for (const line of usage[1].trimEnd().split("\n")) {
      assert.ok(line.startsWith(`  deno task ${name}`), `${e.name}: "${line.trim()}"`);
    }
  }
});
