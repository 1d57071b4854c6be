// `deno task eval` on real dataset folders with a seeded TinyCD checkpoint: the printed table and
// the JSON (values in %, as evaluateModel's report says), split selection, and every bad input
// failing with a message that names the file and writing no JSON.

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { EVAL_HELP, EvalFlags, type EvalJson, runEval } from "../../cli/eval.ts";
import { listSplit } from "../../data/dataset.ts";
import { writeGrayPng, writeRgbPng } from "../../data/png.ts";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint, saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { modelEntry } from "../../models/registry.ts";
import { evaluateModel } from "../../train/evaluate.ts";
import { evaluate } from "../../train/metrics.ts";
import { formatMetricsTable, metricsSummary } from "../../train/report_table.ts";
import { makeSplitDirs, writePair } from "../data/make_pairs.ts";
import { tempDir } from "../temp.ts";

const evalArgs = (...argv: string[]) =>
  parseFlagsOrThrow(["--quiet", ...argv], EvalFlags, { help: EVAL_HELP });

async function saveModel(path: string, name: string, info: Record<string, string> = {}) {
  await initDevice();
  const m = modelEntry(name).create(5);
  await saveCheckpoint(m, path, info);
  m.dispose();
}

/** Labelled 32×32 pairs with change areas from none to all. */
async function writeLabelled(dir: string, seed: number): Promise<void> {
  await makeSplitDirs(dir);
  const changed = [0, 100, 400, 1024];
  await Promise.all(
    changed.map((c, i) => writePair(dir, String(i + 1), { size: 32, changed: c, seed: seed + i })),
  );
}

Deno.test("metrics summary: per-image means, per class and pooled in %, quintiles", () => {
  const report = evaluate([
    { tp: 30, fp: 10, tn: 50, fn: 10 },
    { tp: 0, fp: 0, tn: 100, fn: 0 },
    { tp: 0, fp: 0, tn: 0, fn: 0 }, // no valid pixel: skipped
  ]);
  const s = metricsSummary(report);
  assert.equal(s.images, 2);
  assert.equal(s.skipped, 1);
  assert.equal(s.mIoU, 100 * report.perImage.mIoU);
  assert.equal(s.perClass.changed.IoU, 100 * (0.6 + 1) / 2);
  assert.equal(s.perClass.unchanged.Acc, 100 * report.perImage.unchanged.recall);
  assert.equal(s.pooled.mFscore, 100 * report.pooled.mFscore);
  assert.equal(s.pooled.perClass.changed.Precision, 75);
  assert.equal(s.carQuintiles.length, 5);
  // Two images in five groups: three groups are empty and say so with null.
  assert.deepStrictEqual(s.carQuintiles.map((g) => g.images), [0, 0, 1, 0, 1]);
  assert.equal(s.carQuintiles[2].carMax, 0);
  assert.equal(s.carQuintiles[0].mIoU, null);
  assert.equal(s.carQuintiles[4].carMin, 40);
  const text = formatMetricsTable(s, "demo");
  assert.match(text, /^demo: 2 images, 1 without valid label pixels left out/);
  assert.match(text, /per-image mean +\d/);
  assert.match(text, /CAR quintile/);
});

Deno.test("eval command: table on stdout and JSON equal to evaluateModel's report", async () => {
  const tmp = await tempDir();
  try {
    const root = join(tmp, "ds"), weights = join(tmp, "w.safetensors"), json = join(tmp, "m.json");
    await writeLabelled(join(root, "test"), 100);
    await saveModel(weights, "tinycd", { model: "tinycd" });
    const cli = new URL("../../cli/eval.ts", import.meta.url).pathname;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, "--model", "tinycd", "--weights", weights, "--data", root]
        .concat(["--json", json, "--batch", "2"]),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(r.stdout), stderr = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, stderr);
    assert.match(stdout, /tinycd on .*test: 4 images/);
    assert.match(stdout, /per-image mean/);
    assert.match(stdout, /CAR quintile/);
    assert.match(stderr, /eval: 4\/4 images/, "progress on stderr");

    const got = JSON.parse(await Deno.readTextFile(json)) as EvalJson;
    for (const k of ["mIoU", "mAcc", "mPrecision", "mFscore"] as const) {
      assert.equal(typeof got[k], "number", k);
    }
    assert.equal(got.images, 4);
    assert.equal(got.split, "test");
    assert.deepStrictEqual(Object.keys(got.perClass), ["unchanged", "changed"]);
    assert.deepStrictEqual(Object.keys(got.perClass.changed), [
      "IoU",
      "Acc",
      "Precision",
      "Fscore",
    ]);
    assert.equal(got.carQuintiles.length, 5);
    assert.deepStrictEqual(got.perImage.map((p) => p.car), [
      0,
      100 * 100 / 1024,
      100 * 400 / 1024,
      100,
    ]);

    // The same numbers from evaluateModel in this process.
    const model = modelEntry("tinycd").create(0);
    loadCheckpoint(model, weights);
    const res = await evaluateModel(model, await listSplit(join(root, "test")), { batch: 2 });
    model.dispose();
    const want = metricsSummary(res.report);
    const { mIoU, mAcc, mPrecision, mFscore, perClass, pooled, carQuintiles } = got;
    assert.deepStrictEqual(
      { mIoU, mAcc, mPrecision, mFscore, perClass, pooled, carQuintiles },
      {
        mIoU: want.mIoU,
        mAcc: want.mAcc,
        mPrecision: want.mPrecision,
        mFscore: want.mFscore,
        perClass: want.perClass,
        pooled: want.pooled,
        carQuintiles: want.carQuintiles,
      },
    );
    assert.deepStrictEqual(
      got.perImage.map(({ tp, fp, tn, fn }) => ({ tp, fp, tn, fn })),
      res.perImage.map((p) => p.counts),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("eval: a split folder, or a root with --split, picks the right pairs", async () => {
  const tmp = await tempDir();
  try {
    const root = join(tmp, "ds"), weights = join(tmp, "w.safetensors");
    await writeLabelled(join(root, "test"), 200);
    await writeLabelled(join(root, "val"), 300);
    await Deno.remove(join(root, "val", "A", "4.png")); // val: 3 pairs
    await Deno.remove(join(root, "val", "B", "4.png"));
    await Deno.remove(join(root, "val", "label", "4.png"));
    await saveModel(weights, "tinycd", { model: "tinycd" });
    const common = ["--model=tinycd", `--weights=${weights}`, "--batch=2"];
    const viaRoot = await runEval(evalArgs(...common, `--data=${root}`));
    const direct = await runEval(evalArgs(...common, `--data=${join(root, "test")}`));
    assert.equal(viaRoot.json.split, "test");
    assert.equal(direct.json.split, null);
    assert.deepStrictEqual(viaRoot.json.perImage, direct.json.perImage);
    assert.equal(viaRoot.json.mIoU, direct.json.mIoU);
    const val = await runEval(evalArgs(...common, `--data=${root}`, "--split=val"));
    assert.equal(val.json.images, 3);
    assert.equal(val.json.split, "val");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("eval: each bad input fails naming the file and writes no JSON", async () => {
  const tmp = await tempDir();
  try {
    const weights = join(tmp, "w.safetensors"), json = join(tmp, "m.json");
    await saveModel(weights, "tinycd", { model: "tinycd" });
    let cases = 0;
    const expectFailure = async (
      spoil: (dir: string) => Promise<string | { file: string; root: string }>,
      opts: { weights?: string; also?: string; data?: (dir: string) => string; split?: string } =
        {},
    ) => {
      const dir = join(tmp, `case${++cases}`);
      await writeLabelled(dir, 10);
      const spoilt = await spoil(dir);
      // Dataset errors name the folder in their heading and files relative to it.
      const { file: culprit, root } = typeof spoilt === "string"
        ? { file: spoilt, root: dir }
        : spoilt;
      let msg = "";
      try {
        await runEval(evalArgs(
          "--model=tinycd",
          `--weights=${opts.weights ?? weights}`,
          `--data=${opts.data ? opts.data(dir) : dir}`,
          `--json=${json}`,
          ...(opts.split ? [`--split=${opts.split}`] : []),
        ));
      } catch (e) {
        msg = (e as Error).message;
      }
      assert.ok(msg, `case ${cases}: expected an error naming ${culprit}`);
      const named = msg.includes(culprit) ||
        (msg.includes(root) && msg.includes(relative(root, culprit)));
      assert.ok(named, `case ${cases}: error should name ${culprit}:\n${msg}`);
      if (opts.also) assert.ok(msg.includes(opts.also), `should say "${opts.also}":\n${msg}`);
      assert.deepStrictEqual(
        [...Deno.readDirSync(tmp)].map((e) => e.name).filter((n) => n.startsWith("m.json")),
        [],
        "no JSON (or temporary JSON) written",
      );
    };
    const remove = (rel: string) => async (dir: string) => {
      await Deno.remove(join(dir, rel));
      return join(dir, rel);
    };
    await expectFailure(remove("B/2.png"));
    await expectFailure(remove("label/3.png"));
    await expectFailure(async (dir) => {
      const small = { width: 16, height: 16, data: new Uint8Array(16 * 16) };
      await writeGrayPng(join(dir, "label", "2.png"), small);
      return join(dir, "label", "2.png");
    }, { also: "16×16" });
    await expectFailure(async (dir) => {
      await Deno.writeFile(join(dir, "B", "1.png"), new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0]));
      return join(dir, "B", "1.png");
    }, { also: "not a PNG" });
    await expectFailure(async (dir) => {
      const grey = new Uint8Array(32 * 32).fill(255, 0, 10).fill(7, 10, 12);
      await writeGrayPng(join(dir, "label", "4.png"), { width: 32, height: 32, data: grey });
      return join(dir, "label", "4.png");
    }, { also: "not binary" });
    // A dataset root: the test split is checked the same way.
    await expectFailure(async (dir) => {
      const test = join(dir, "test");
      await Deno.mkdir(test);
      for (const f of ["A", "B", "label"]) await Deno.rename(join(dir, f), join(test, f));
      const rgb = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) };
      await writeRgbPng(join(test, "B", "9.png"), rgb);
      return { file: join(test, "A", "9.png"), root: test }; // B/9.png lacks its A partner
    });
    // Checkpoints: another model's, a missing file.
    const other = join(tmp, "fc.safetensors");
    await saveModel(other, "fc_siam_diff", { model: "fc_siam_diff" });
    await expectFailure(() => Promise.resolve(other), { weights: other, also: "fc_siam_diff" });
    const missing = join(tmp, "nope.safetensors");
    await expectFailure(() => Promise.resolve(missing), { weights: missing, also: "not found" });
    // Splits that are not there: no test/ folder; val by the JL1-CD rule from too small a train.
    await expectFailure(() => Promise.resolve(tmp), { data: () => tmp, also: "test/" });
    await expectFailure(async (dir) => {
      const train = join(dir, "train");
      await Deno.mkdir(train);
      for (const f of ["A", "B", "label"]) await Deno.rename(join(dir, f), join(train, f));
      return train;
    }, { split: "val", also: "only 4 pairs" });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
