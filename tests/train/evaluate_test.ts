// evaluateModel against an independent count: the masks `deno task predict` writes, compared
// with the labels on the CPU, must give exactly the per-image TP/FP/TN/FN that evaluateModel
// counts on the GPU — for batched whole images and for a sliding-window image alike.

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { PREDICT_HELP, PredictFlags, runPredict } from "../../cli/predict.ts";
import { listSplit } from "../../data/dataset.ts";
import { readGrayPng } from "../../data/png.ts";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint, saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { modelEntry } from "../../models/registry.ts";
import { evaluateModel } from "../../train/evaluate.ts";
import { type Confusion, evaluate } from "../../train/metrics.ts";
import { makeSplitDirs, writePair } from "../data/make_pairs.ts";
import { tempDir } from "../temp.ts";

const MODEL = "fc_siam_diff"; // the 2-channel (softmax) form; the predict tests use TinyCD

/** TP, FP, TN, FN of a 0/255 mask against a 0/255 label. */
function cpuCounts(mask: Uint8Array, label: Uint8Array): Confusion {
  const c = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (let i = 0; i < mask.length; i++) {
    const p = mask[i] === 255, l = label[i] === 255;
    if (p && l) c.tp++;
    else if (p) c.fp++;
    else if (l) c.fn++;
    else c.tn++;
  }
  return c;
}

Deno.test("evaluateModel: GPU counts equal the CPU counts of predict's masks", async () => {
  await initDevice();
  const tmp = await tempDir();
  try {
    // Pair 2 is larger than the tile (sliding window) and sits between whole-image pairs, so
    // the batch of 32×32 pairs is cut before it and starts again after it.
    const data = join(tmp, "data"), out = join(tmp, "out"), weights = join(tmp, "w.safetensors");
    await makeSplitDirs(data);
    await writePair(data, "1", { size: 32, changed: 200, seed: 1 });
    await writePair(data, "2", { size: 48, changed: 900, seed: 2 });
    await writePair(data, "3", { size: 32, changed: 0, seed: 3 });
    await writePair(data, "4", { size: 32, changed: 1024, seed: 4 });
    const saved = modelEntry(MODEL).create(7);
    await saveCheckpoint(saved, weights, { model: MODEL });
    saved.dispose();
    const window = ["--tile=32", "--overlap=16", "--batch=2"];
    await runPredict(parseFlagsOrThrow(
      ["--quiet", `--model=${MODEL}`, `--weights=${weights}`, `--data=${data}`, `--out=${out}`]
        .concat(window),
      PredictFlags,
      { help: PREDICT_HELP },
    ));

    const pairs = await listSplit(data);
    const expected: Confusion[] = [];
    for (const p of pairs) {
      const mask = (await readGrayPng(join(out, `${p.name}.png`))).data;
      expected.push(cpuCounts(mask, (await readGrayPng(p.label)).data));
    }
    assert.ok(expected.some((c) => c.tp + c.fp > 0), "some pixels predicted changed");
    assert.ok(expected.some((c) => c.tn + c.fn > 0), "some pixels predicted unchanged");

    const model = modelEntry(MODEL).create(0);
    loadCheckpoint(model, weights, { expectModel: MODEL });
    model.train();
    const progress: number[] = [];
    const res = await evaluateModel(model, pairs, {
      tile: 32,
      overlap: 16,
      batch: 2,
      onProgress: (done, total) => {
        assert.equal(total, 4);
        progress.push(done);
      },
    });
    assert.equal(model.training, true, "training mode restored");
    assert.deepStrictEqual(progress.at(-1), 4);
    assert.deepStrictEqual(res.perImage.map((r) => r.name), ["1", "2", "3", "4"]);
    assert.deepStrictEqual(res.perImage.map((r) => r.counts), expected);
    res.perImage.forEach((r, i) => {
      const c = expected[i], valid = c.tp + c.fp + c.tn + c.fn;
      assert.equal(valid, i === 1 ? 48 * 48 : 32 * 32);
      assert.equal(r.car, (c.tp + c.fn) / valid);
      assert.equal(r.predictedCar, (c.tp + c.fp) / valid);
    });
    assert.equal(res.perImage[2].car, 0);
    assert.equal(res.perImage[3].car, 1);
    assert.deepStrictEqual(res.report, evaluate(expected));

    // Batch size changes only how many images share a forward pass, not what is counted.
    const one = await evaluateModel(model, pairs, { tile: 32, overlap: 16, batch: 1 });
    assert.deepStrictEqual(one.perImage.map((r) => r.counts), expected);
    model.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("evaluateModel: no pairs gives an empty report; a bad file is named", async () => {
  await initDevice();
  const tmp = await tempDir();
  const model = modelEntry(MODEL).create(0);
  try {
    const empty = await evaluateModel(model, []);
    assert.equal(empty.report.images, 0);
    assert.deepStrictEqual(empty.perImage, []);

    await makeSplitDirs(tmp);
    await writePair(tmp, "1", { size: 32, seed: 1 });
    await Deno.remove(join(tmp, "B", "1.png"));
    const pairs = await listSplit(tmp);
    await assert.rejects(
      () => evaluateModel(model, pairs),
      (e: Error) => e.message.includes(join(tmp, "B", "1.png")),
    );
    await assert.rejects(() => evaluateModel(model, [], { threshold: 2 }), /threshold 2/);
    await assert.rejects(() => evaluateModel(model, [], { tile: 32, overlap: 40 }), /overlap 40/);
  } finally {
    model.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});
