// Batches and tiles within the adapter's buffer limits (issue 18, item 5): the planner as a pure
// function on made-up limits, the engine run with small fake limits (same probabilities and
// counts as the unsplit run), and one real run on the software adapter whose default batch
// would bind a buffer above its 128 MiB limit.

import assert from "node:assert/strict";
import { join } from "node:path";
import { initDevice } from "../../engine/device.ts";
import { modelEntry } from "../../models/registry.ts";
import { evaluateModel } from "../../train/evaluate.ts";
import { planFor, predictProbability } from "../../train/predict.ts";
import {
  measureBytesPerPixel,
  pixelBudget,
  planWindow,
  type WindowPlan,
} from "../../train/window_plan.ts";
import { listSplit } from "../../data/dataset.ts";
import { writeSplit } from "../data/make_pairs.ts";
import { assertClose, rng } from "../util.ts";
import { tempDir } from "../temp.ts";

const MIB = 1024 * 1024;
const software = { maxStorageBufferBindingSize: 128 * MIB, maxBufferSize: 2 ** 31 - 1 };

Deno.test("planWindow: the issue's 1000×700 scene at tile 512 × batch 4 on a 128 MiB adapter", () => {
  // TinyCD's largest buffer is 256 bytes per input pixel: 4 × 512² × 256 B = 256 MiB.
  const base = { width: 1000, height: 700, tile: 512, overlap: 64, batch: 4, sizeDivisor: 16 };
  const p = planWindow({ ...base, bytesPerPixel: 256, limits: software });
  assert.deepStrictEqual([p.tile, p.overlap, p.batch], [512, 64, 2]);
  assert.match(p.note!, /batch 4 → 2 to stay within the adapter's 128 MiB buffer-binding limit/);
  // A GPU's limits leave the request alone, without a note.
  const gpu = { maxStorageBufferBindingSize: 2 ** 32 - 1, maxBufferSize: 2 ** 40 };
  const g = planWindow({ ...base, bytesPerPixel: 256, limits: gpu });
  assert.deepStrictEqual(g, { tile: 512, overlap: 64, batch: 4, note: undefined } as WindowPlan);
  // One tile alone too large: the largest multiple of 16 whose square fits, overlap below it.
  const tiny = { maxStorageBufferBindingSize: 1 * MIB, maxBufferSize: 2 ** 31 - 1 };
  const t = planWindow({ ...base, bytesPerPixel: 256, limits: tiny });
  assert.deepStrictEqual([t.tile, t.overlap, t.batch], [64, 8, 1]);
  assert.match(t.note!, /tile 512 → 64 \(overlap 8\)/);
  // Small images run whole, padded: 36×20 pads to 48×32 = 1536 pixels, 2 fit in 4096.
  const s = planWindow({ ...base, width: 36, height: 20, bytesPerPixel: 256, limits: tiny });
  assert.deepStrictEqual([s.tile, s.batch], [512, 2]);
  // Nothing fits: named.
  assert.throws(
    () => planWindow({ ...base, bytesPerPixel: 1e6, limits: tiny }),
    /even a 16×16 tile needs buffers beyond the adapter's 1 MiB/,
  );
});

Deno.test("pixelBudget: the binding limit, and maxBufferSize after the pool's size class", () => {
  assert.equal(pixelBudget(256, software), 524288);
  // A buffer limit below the binding limit wins, with the pool's rounding (≤ 12.5 %) counted.
  const b = pixelBudget(256, { maxStorageBufferBindingSize: 128 * MIB, maxBufferSize: 64 * MIB });
  assert.ok(b * 256 <= 64 * MIB && b * 256 > 0.8 * 64 * MIB, `${b}`);
});

Deno.test("predict and eval with small fake limits: split batches and tiles, same results", async () => {
  await initDevice();
  const entry = modelEntry("tinycd");
  const model = entry.create(5).eval();
  const tmp = await tempDir();
  try {
    const bpp = measureBytesPerPixel(model, entry.sizeDivisor);
    assert.ok(bpp > 0);
    const r = rng(9);
    const pair = {
      width: 48,
      height: 40,
      a: Float32Array.from({ length: 3 * 48 * 40 }, () => r() - 0.5),
      b: Float32Array.from({ length: 3 * 48 * 40 }, () => r() - 0.5),
    };
    const window = { tile: 32, overlap: 8, batch: 4, sizeDivisor: 16 };
    const free = await predictProbability(model, pair, window);
    // Room for two 32×32 tiles per forward: the 4 tiles go as 2 + 2.
    const two = { maxStorageBufferBindingSize: bpp * 32 * 32 * 2, maxBufferSize: 2 ** 31 - 1 };
    const notes: string[] = [];
    const split = await predictProbability(model, pair, {
      ...window,
      limits: two,
      onNote: (n) => notes.push(n),
    });
    assertClose(split, free, { atol: 1e-6, rtol: 0, what: "batch split" });
    assert.match(notes[0], /batch 4 → 2/);
    // Room for one 32×32 tile: a 48×40 image asked to run whole (tile 512) is tiled instead.
    const one = { maxStorageBufferBindingSize: bpp * 32 * 32, maxBufferSize: 2 ** 31 - 1 };
    const tiled = await predictProbability(model, pair, {
      tile: 512,
      sizeDivisor: 16,
      limits: one,
    });
    assert.equal(tiled.length, 48 * 40);
    assert.ok(tiled.every((v) => v >= 0 && v <= 1));

    // Eval: 5 same-size pairs at batch 4, limits for one image per forward: same counts.
    await writeSplit(join(tmp, "s"), 5, { size: 32, changed: 100 });
    const pairs = await listSplit(join(tmp, "s"));
    const all = await evaluateModel(model, pairs, { batch: 4, sizeDivisor: 16 });
    const evalNotes: string[] = [];
    const alone = await evaluateModel(model, pairs, {
      batch: 4,
      sizeDivisor: 16,
      limits: one,
      onNote: (n) => evalNotes.push(n),
    });
    assert.deepStrictEqual(alone.perImage, all.perImage);
    assert.match(evalNotes[0], /batch 4 → 1/);
  } finally {
    model.dispose();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("planFor: a model whose largest buffer does not grow with the image runs 256² whole", async () => {
  await initDevice();
  // IFN's largest buffer is 48 MiB at 128² and at 256² alike: the 128² probe's per-pixel figure
  // (3 KiB) would cut a 256² image into 208-pixel tiles on a 128 MiB adapter, and tiles change
  // the probabilities near their seams (4.5e-4 against the whole-image reference).
  const entry = modelEntry("ifn_vgg16");
  const model = entry.create(0).eval();
  try {
    const small = measureBytesPerPixel(model, entry.sizeDivisor);
    const exact = measureBytesPerPixel(model, entry.sizeDivisor, 256, 256);
    assert.ok(small * 256 * 256 > 128 * MIB, `the probe says ${small} bytes per pixel`);
    assert.ok(exact * 256 * 256 <= 128 * MIB, `256² measures ${exact} bytes per pixel`);
    const notes: string[] = [];
    const plan = planFor(model, 256, 256, {
      sizeDivisor: entry.sizeDivisor,
      limits: software,
      onNote: (n) => notes.push(n),
    });
    assert.equal(plan.tile, 512);
    assert.ok(plan.batch >= 1);
    assert.ok(!notes.some((n) => n.includes("tile")), notes.join("; "));
    // A tile that must shrink is still planned from the probe (the safe side): 1024² at IFN's
    // 768 bytes per pixel needs 768 MiB.
    const big = planFor(model, 1024, 1024, { sizeDivisor: entry.sizeDivisor, limits: software });
    assert.ok(big.tile < 512 && big.tile * big.tile * small <= 128 * MIB, `tile ${big.tile}`);
  } finally {
    model.dispose();
  }
});
