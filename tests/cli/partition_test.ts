// deno task partition on labels written in the test: exact CAR boundaries (≤ 0.05 small,
// ≤ 0.2 medium, above large; ≤ 0.10 for two teachers), the manifest and the histogram.

import assert from "node:assert/strict";
import { join } from "node:path";
import { readManifest } from "../../data/partition.ts";
import { makeSplitDirs, writePair } from "../data/make_pairs.ts";
import { tempDir } from "../temp.ts";

const SIZE = 20; // 400 pixels: 20 changed = 5 %, 80 = 20 %, 40 = 10 %
const CHANGED: Record<string, number> = {
  zero: 0,
  at5: 20,
  above5: 21,
  at10: 40,
  above10: 41,
  at20: 80,
  above20: 81,
  all: 400,
};

const root = await tempDir({ prefix: "cd-partition-" });
for (const split of ["train", "val", "test"]) await makeSplitDirs(join(root, split));
for (const [name, changed] of Object.entries(CHANGED)) {
  await writePair(join(root, "train"), name, { size: SIZE, changed });
}
for (const split of ["val", "test"]) {
  await writePair(join(root, split), "x", { size: SIZE, changed: 7 });
}

async function partition(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../cli/partition.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout), err: dec.decode(out.stderr) };
}

Deno.test("three teachers: ≤ 0.05 small, ≤ 0.2 medium, above large", async () => {
  const out = join(root, "p3");
  const r = await partition("--data", root, "--out", out);
  assert.equal(r.code, 0, r.err);
  const m = await readManifest(join(out, "partition.json"));
  const by = Object.fromEntries(m.pairs.map((p) => [p.name, p.partition]));
  assert.deepEqual(by, {
    zero: "small",
    at5: "small",
    above5: "medium",
    at10: "medium",
    above10: "medium",
    at20: "medium",
    above20: "large",
    all: "large",
  });
  assert.match(r.out, /small\s+2 pairs/);
  assert.match(r.out, /large\s+2 pairs\s+CAR 20\.25–100\.00 %/);
  const svg = await Deno.readTextFile(join(out, "car_histogram.svg"));
  assert.match(svg, /^<svg/);
});

Deno.test("two teachers split at 0.10; custom thresholds; bad flags are named", async () => {
  const out = join(root, "p2");
  assert.equal((await partition("--data", root, "--out", out, "--teachers", "2")).code, 0);
  const m = await readManifest(join(out, "partition.json"));
  const small = m.pairs.filter((p) => p.partition === "small").map((p) => p.name).sort();
  assert.deepEqual(small, ["at10", "at5", "above5", "zero"].sort());
  const custom = join(root, "pc");
  assert.equal(
    (await partition("--data", root, "--out", custom, "--thresholds", "0.01,0.5")).code,
    0,
  );
  const mc = await readManifest(join(custom, "partition.json"));
  assert.deepEqual(mc.thresholds, [0.01, 0.5]);
  const bad = await partition("--data", root, "--teachers", "4");
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /--teachers/);
  const both = await partition("--data", root, "--teachers", "2", "--thresholds", "0.1");
  assert.notEqual(both.code, 0);
  assert.match(both.err, /not both/);
});

Deno.test("--auto: equal-count thresholds, printed as --thresholds takes them", async () => {
  const out = join(root, "pa");
  const r = await partition("--data", root, "--out", out, "--auto", "--teachers", "4");
  assert.equal(r.code, 0, r.err);
  const m = await readManifest(join(out, "partition.json"));
  assert.equal(m.thresholds.length, 3);
  const per = m.names.map((n) => m.pairs.filter((p) => p.partition === n).length);
  assert.deepEqual(per, [2, 2, 2, 2]);
  const printed = /^thresholds (\S+)$/m.exec(r.out)![1];
  assert.equal(printed, m.thresholds.join(","));
  // The printed line given back as --thresholds makes the same partitions.
  const again = join(root, "pa2");
  assert.equal((await partition("--data", root, "--out", again, "--thresholds", printed)).code, 0);
  assert.deepEqual((await readManifest(join(again, "partition.json"))).pairs, m.pairs);
  const bad = await partition("--data", root, "--auto", "--teachers", "5");
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /--teachers 5: with --auto give 1 to 4/);
});
