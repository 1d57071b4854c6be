import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { labelValues } from "../../data/label.ts";
import { readGrayPng } from "../../data/png.ts";
import { splitCounts, type SynthSummary, writeSynthDataset } from "../../data/synth.ts";
import { synthPair } from "../../data/synth/pair.ts";
import { hashTree } from "./make_pairs.ts";
import { tempDir } from "../temp.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir({ prefix: "cd_synth_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("synth: split counts default to JL1-CD's shares", () => {
  assert.deepStrictEqual(splitCounts(5000), { train: 3900, val: 100, test: 1000 });
  assert.deepStrictEqual(splitCounts(10, 0, 2), { train: 8, val: 0, test: 2 });
  assert.throws(() => splitCounts(3, 2, 1), /no training pairs/);
});

Deno.test("synth: the same seed gives the same bytes, whatever the number of workers", async () => {
  await withTemp(async (dir) => {
    const opts = { pairs: 12, size: 48, seed: 42, val: 2, test: 2 };
    await writeSynthDataset({ ...opts, out: join(dir, "one"), workers: 1 });
    await writeSynthDataset({ ...opts, out: join(dir, "two"), workers: 2 });
    const one = await hashTree(join(dir, "one")), two = await hashTree(join(dir, "two"));
    assert.equal(Object.keys(one).length, 12 * 3 + 2); // PNGs + synth.json + histogram
    assert.deepStrictEqual(one, two);
    await writeSynthDataset({ ...opts, seed: 43, out: join(dir, "three"), workers: 2 });
    const three = await hashTree(join(dir, "three"));
    assert.notEqual(three["train/A/0001.png"], one["train/A/0001.png"]);
    // An existing output is not silently mixed with a new one.
    await assert.rejects(writeSynthDataset({ ...opts, out: join(dir, "one") }), /already holds/);
    await writeSynthDataset({ ...opts, pairs: 6, out: join(dir, "one"), overwrite: true });
    assert.equal(Object.keys(await hashTree(join(dir, "one"))).length, 6 * 3 + 2);
  });
});

Deno.test("synth: CAR skewed like JL1-CD, binary labels, and the checker accepts it", async () => {
  await withTemp(async (dir) => {
    const summary = await writeSynthDataset({ out: dir, pairs: 200, size: 64, seed: 7 });
    const all = summary.car.all!;
    assert.equal(all.count, 200);
    assert.ok(all.under5Share >= 0.5, `share with CAR ≤ 5 %: ${all.under5Share}`);
    assert.ok(all.zeroShare > 0 && all.zeroShare <= 0.2, `unchanged share ${all.zeroShare}`);
    assert.ok(all.max >= 0.5, `max CAR ${all.max}`);
    assert.ok(all.partitions.medium > 0 && all.partitions.large > 0, "every partition occurs");
    const written = JSON.parse(await Deno.readTextFile(join(dir, "synth.json"))) as SynthSummary;
    assert.deepStrictEqual(written, summary);
    assert.deepStrictEqual(written.splits, { train: 156, val: 4, test: 40 });
    assert.ok(Object.keys(written.events).length >= 6, Object.keys(written.events).join(", "));
    assert.ok((await Deno.readTextFile(join(dir, "car_histogram.svg"))).includes("</svg>"));
    // The checker reads every file: sizes agree, labels are {0, 255}; it returns the same CARs.
    const ds = await checkDataset(dir, { workers: 2 });
    assert.equal(ds.valFromTrain, false);
    assert.equal(ds.train.length + ds.val.length + ds.test.length, 200);
    const max = Math.max(...[...ds.train, ...ds.val, ...ds.test].map((p) => p.car));
    assert.equal(Math.round(max * 1e6) / 1e6, all.max);
    for (const p of ds.train.slice(0, 20)) {
      const values = labelValues((await readGrayPng(p.label)).data);
      assert.ok(values.every((v) => v === 0 || v === 255), `${p.label}: ${values}`);
    }
  });
});

Deno.test("synth: labelled pixels change between the dates much more than the rest", () => {
  for (const seed of [1, 2, 3, 4]) {
    const p = synthPair(seed, 96, 0.15);
    assert.ok(Math.abs(p.car - 0.15) < 0.05, `CAR ${p.car} near the 0.15 target`);
    let on = 0, off = 0, nOn = 0, nOff = 0;
    for (let i = 0; i < p.label.length; i++) {
      let d = 0;
      for (let c = 0; c < 3; c++) d += Math.abs(p.a[3 * i + c] - p.b[3 * i + c]);
      if (p.label[i]) [on, nOn] = [on + d, nOn + 1];
      else [off, nOff] = [off + d, nOff + 1];
    }
    assert.ok(
      on / nOn > 2 * (off / nOff),
      `seed ${seed}: changed ${on / nOn}, unchanged ${off / nOff}`,
    );
  }
  const none = synthPair(5, 64, 0);
  assert.equal(none.car, 0);
  assert.ok(none.label.every((v) => v === 0));
  assert.notDeepStrictEqual(none.a, none.b, "unchanged pairs still differ by nuisance");
  const full = synthPair(6, 64, 1);
  assert.equal(full.car, 1);
});

Deno.test("cli/synth: writes a dataset; bad flags exit 2 with one line naming the flag", async () => {
  await withTemp(async (dir) => {
    const cli = new URL("../../cli/synth.ts", import.meta.url).pathname;
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", cli, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    };
    const ok = await run("--out", join(dir, "ds"), "--pairs", "5", "--size=32", "--seed", "9");
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /wrote 5 pairs \(train 4, val 0, test 1\) of 32×32/);
    assert.match(ok.stderr, /synth: 5\/5 pairs/);
    const help = await run("--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Write a synthetic JL1-like/);
    for (
      const [args, message] of [
        [["--out", dir, "--bogus"], /unknown flag --bogus/],
        [["--out", dir, "--size", "abc"], /--size: expected a number, got "abc"/],
        [["--pairs", "3"], /--out is required/],
        [["--out", dir, "--pairs", "0"], /--pairs: must be ≥ 1 \(got 0\)/],
      ] as const
    ) {
      const bad = await run(...args);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, message);
      assert.ok(!/\n\s+at /.test(bad.stderr), `no stack trace:\n${bad.stderr}`);
    }
  });
});
