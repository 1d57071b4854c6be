// Issue 18's eval defects, each reproduced on small real folders: a pair failing mid-run threw
// away every count; TinyCD on a size that is not a multiple of 16 failed in the model; a split
// folder with --split was silently taken whole; --model was required though the checkpoint
// records it; the demo's results.json used fractions and other key names than eval --json.

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { EVAL_HELP, EvalFlags, runEval } from "../../cli/eval.ts";
import { initDevice } from "../../engine/device.ts";
import { saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { modelEntry } from "../../models/registry.ts";
import { evaluate } from "../../train/metrics.ts";
import { metricsSummary } from "../../train/report_table.ts";
import { writeReport } from "../../train/report.ts";
import { makeSplitDirs, writePair } from "../data/make_pairs.ts";
import { tempDir } from "../temp.ts";

const args = (...argv: string[]) =>
  parseFlagsOrThrow(["--quiet", ...argv], EvalFlags, { help: EVAL_HELP });

async function saveTinycd(path: string, info: Record<string, string> = { model: "tinycd" }) {
  await initDevice();
  const m = modelEntry("tinycd").create(3);
  await saveCheckpoint(m, path, info);
  m.dispose();
}

Deno.test("eval: a pair failing mid-run is listed and the other pairs still count", async () => {
  const tmp = await tempDir();
  try {
    const dir = join(tmp, "test"), w = join(tmp, "w.safetensors");
    await makeSplitDirs(dir);
    for (let i = 1; i <= 8; i++) await writePair(dir, String(i), { size: 32, changed: 30 * i });
    await saveTinycd(w);
    // Decoding runs at most 4 pairs ahead at batch 1: pair 8 is read after pair 1 is counted.
    const a8 = join(dir, "A", "8.png"), bytes = await Deno.readFile(a8);
    const r = await runEval(
      args("--model=tinycd", `--weights=${w}`, `--data=${dir}`, "--batch=1"),
      (done) => {
        if (done === 1) Deno.writeFileSync(a8, bytes.subarray(0, 60));
      },
    );
    assert.equal(r.json.images, 7);
    assert.equal(r.json.perImage.length, 7);
    assert.equal(r.json.failed.length, 1);
    assert.equal(r.json.failed[0].name, "8");
    assert.ok(r.json.failed[0].message.includes("8.png"), r.json.failed[0].message);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("eval: TinyCD on a 30×20 labelled pair pads to 16 and counts every pixel", async () => {
  const tmp = await tempDir();
  try {
    const dir = join(tmp, "test"), w = join(tmp, "w.safetensors");
    await makeSplitDirs(dir);
    // writePair makes squares; 30×20 is the top of a 30×30 one, rewritten.
    const { readGrayPng, readRgbPng, writeGrayPng, writeRgbPng } = await import(
      "../../data/png.ts"
    );
    await writePair(dir, "1", { size: 30, changed: 300 });
    for (const f of ["A", "B"]) {
      const img = await readRgbPng(join(dir, f, "1.png"));
      await writeRgbPng(join(dir, f, "1.png"), {
        width: 30,
        height: 20,
        data: img.data.subarray(0, 30 * 20 * 3),
      });
    }
    const l = await readGrayPng(join(dir, "label", "1.png"));
    await writeGrayPng(join(dir, "label", "1.png"), {
      width: 30,
      height: 20,
      data: l.data.subarray(0, 30 * 20),
    });
    await saveTinycd(w);
    const r = await runEval(args("--model=tinycd", `--weights=${w}`, `--data=${dir}`));
    const c = r.json.perImage[0];
    assert.equal(c.tp + c.fp + c.tn + c.fn, 30 * 20);
    assert.equal(c.tp + c.fn, 300);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("eval: --data and --split as predict reads them; --model from the checkpoint", async () => {
  const tmp = await tempDir();
  try {
    const root = join(tmp, "root"), w = join(tmp, "w.safetensors");
    await makeSplitDirs(join(root, "test"));
    await writePair(join(root, "test"), "1", { size: 32, changed: 100 });
    await writePair(join(root, "test"), "2", { size: 32, changed: 10 });
    await saveTinycd(w);
    const r = await runEval(args(`--weights=${w}`, `--data=${root}`, "--batch=1"));
    assert.equal(r.json.model, "tinycd");
    assert.equal(r.json.split, "test");
    assert.equal(r.json.images, 2);
    await assert.rejects(
      runEval(args(`--weights=${w}`, `--data=${join(root, "test")}`, "--split=train")),
      /is a split folder/,
    );
    await assert.rejects(
      runEval(args(`--weights=${w}`, `--data=${root}`, "--split=train")),
      /neither a split folder .* nor a dataset root with train\//,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("results.json and eval --json: one schema, percentages", async () => {
  const tmp = await tempDir();
  try {
    const counts = [
      { tp: 30, fp: 5, tn: 60, fn: 5 },
      { tp: 0, fp: 2, tn: 98, fn: 0 },
      { tp: 10, fp: 0, tn: 80, fn: 10 },
    ];
    const report = evaluate(counts);
    await writeReport(tmp, {
      title: "t",
      model: "fc_ef",
      dataset: "d",
      notes: [],
      strategies: [{ name: "Original", report }, { name: "O-P", report }],
      routing: { accuracy: 0.5, names: ["small", "large"], confusion: [[1, 1], [0, 0]] },
      overlays: [],
    });
    const results = JSON.parse(await Deno.readTextFile(join(tmp, "results.json")));
    assert.equal(results.units, "%");
    const original = results.strategies.Original;
    // The very object eval --json spreads at its top level (metricsSummary), keys and values.
    assert.deepStrictEqual(original, JSON.parse(JSON.stringify(metricsSummary(report))));
    assert.ok(Math.abs(original.mIoU - 100 * report.perImage.mIoU) < 1e-9);
    assert.ok(Math.abs(original.perClass.changed.IoU - 100 * report.perImage.changed.iou) < 1e-9);
    assert.equal(results.routing.accuracy, 50);
    assert.ok(!("perImage" in original), "no fraction-valued perImage block");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
