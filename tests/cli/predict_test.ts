// `deno task predict` on real PNG folders with a seeded TinyCD checkpoint: masks, overlays and
// probabilities against the model's own output, the sliding window against per-tile runs, and
// every bad input failing with a message that names the file and leaving no output behind.

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { PREDICT_HELP, PredictFlags, runPredict } from "../../cli/predict.ts";
import { listSplit } from "../../data/dataset.ts";
import {
  readGrayPng,
  readRgbPng,
  type RgbImage,
  writeGrayPng,
  writeRgbPng,
} from "../../data/png.ts";
import { loadSample } from "../../data/sample.ts";
import { noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint, saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { sigmoid } from "../../engine/ops/elementwise.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { IMAGENET_NORM, modelEntry } from "../../models/registry.ts";
import { errorOverlay, OVERLAY_COLOURS } from "../../train/overlay.ts";
import {
  checkWindowOptions,
  normalizeImage,
  predictProbability,
  tileStarts,
  tileWindows,
} from "../../train/predict.ts";
import { makeSplitDirs, writePair } from "../data/make_pairs.ts";
import { assertClose } from "../util.ts";
import { tempDir } from "../temp.ts";

const SEED = 3;

function predictArgs(...argv: string[]) {
  return parseFlagsOrThrow(["--quiet", ...argv], PredictFlags, { help: PREDICT_HELP });
}

async function saveModel(path: string, name: string, info: Record<string, string> = {}) {
  await initDevice();
  const m = modelEntry(name).create(SEED);
  await saveCheckpoint(m, path, info);
  m.dispose();
}

/** Three labelled 32×32 pairs with different images and change areas. */
async function writeLabelled(dir: string): Promise<void> {
  await makeSplitDirs(dir);
  await writePair(dir, "1", { size: 32, changed: 300, seed: 11 });
  await writePair(dir, "2", { size: 32, changed: 0, seed: 12 });
  await writePair(dir, "10", { size: 32, changed: 700, seed: 13 });
}

/** The model's probabilities computed here directly: the registry's normalisation, whole image. */
async function directProbs(weights: string, dir: string): Promise<Map<string, Float32Array>> {
  const model = modelEntry("tinycd").create(0).eval();
  loadCheckpoint(model, weights);
  const out = new Map<string, Float32Array>();
  for (const p of await listSplit(dir)) {
    const s = await loadSample(p, undefined, IMAGENET_NORM);
    const shape = [1, 3, s.height, s.width];
    const y = scope(() =>
      noGrad(() => sigmoid(model.forward(tensor(s.a, shape), tensor(s.b, shape))))
    );
    out.set(p.name, (await y.read()) as Float32Array);
    y.dispose();
  }
  model.dispose();
  return out;
}

function median(values: Float32Array[]): number {
  const all = values.flatMap((v) => [...v]).sort((a, b) => a - b);
  return all[Math.floor(all.length / 2)];
}

Deno.test("predict: 0/255 masks, probabilities equal the model's output, overlay colours", async () => {
  const tmp = await tempDir();
  try {
    const data = join(tmp, "data"), out = join(tmp, "out"), probs = join(tmp, "p.safetensors");
    const weights = join(tmp, "w.safetensors");
    await writeLabelled(data);
    await saveModel(weights, "tinycd", { model: "tinycd" });
    const direct = await directProbs(weights, data);
    // A threshold inside the probabilities' range, so masks hold both values.
    const t = median([...direct.values()]);
    const summary = await runPredict(predictArgs(
      "--model=tinycd",
      `--weights=${weights}`,
      `--data=${data}`,
      `--out=${out}`,
      `--probs=${probs}`,
      `--threshold=${t}`,
    ));
    assert.deepStrictEqual(summary, {
      images: 3,
      labelled: true,
      out,
      probs,
      model: "tinycd",
      failed: [],
    });
    assert.deepStrictEqual(
      [...Deno.readDirSync(out)].map((e) => e.name).sort(),
      ["1.png", "10.png", "2.png", "overlay"],
    );

    const file = readSafetensors(probs);
    assert.deepStrictEqual([...file.keys()].sort(), ["prob.1", "prob.10", "prob.2"]);
    assert.equal(file.metadata.model, "tinycd");
    let changed = 0, unchanged = 0;
    for (const name of ["1", "2", "10"]) {
      const e = file.get(`prob.${name}`)!;
      assert.equal(e.dtype, "F32");
      assert.deepStrictEqual(e.shape, [32, 32]);
      const p = e.data as Float32Array;
      assertClose(p, direct.get(name)!, { atol: 1e-6, rtol: 0, what: `prob.${name}` });

      const mask = await readGrayPng(join(out, `${name}.png`));
      assert.deepStrictEqual([mask.width, mask.height], [32, 32]);
      const label = (await readGrayPng(join(data, "label", `${name}.png`))).data;
      const b = await readRgbPng(join(data, "B", `${name}.png`));
      const overlay = await readRgbPng(join(out, "overlay", `${name}.png`));
      for (let i = 0; i < p.length; i++) {
        const m = mask.data[i];
        assert.ok(m === 0 || m === 255, `${name}.png pixel ${i} is ${m}, not 0 or 255`);
        assert.equal(m === 255, p[i] > t, `${name}.png pixel ${i}: mask disagrees with prob`);
        if (m) changed++;
        else unchanged++;
        const truth = label[i] === 255, said = m === 255;
        const want = truth && said
          ? OVERLAY_COLOURS.found
          : truth
          ? OVERLAY_COLOURS.missed
          : said
          ? OVERLAY_COLOURS.falseAlarm
          : b.data.subarray(3 * i, 3 * i + 3);
        assert.deepStrictEqual(
          [...overlay.data.subarray(3 * i, 3 * i + 3)],
          [...want],
          `overlay ${name}.png pixel ${i} (label ${truth}, prediction ${said})`,
        );
      }
    }
    assert.ok(
      changed > 0 && unchanged > 0,
      `masks should hold both values (${changed}/${unchanged})`,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("overlay: hand-made case, one pixel of each kind", () => {
  const image: RgbImage = {
    width: 2,
    height: 2,
    data: Uint8Array.from([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]),
  };
  // Pixels: unchanged & right, missed, found, false alarm.
  const o = errorOverlay(image, [0, 1, 1, 0], [0, 0, 1, 1]);
  assert.deepStrictEqual([...o.data], [10, 20, 30, 255, 0, 0, 255, 255, 255, 0, 0, 255]);
  assert.deepStrictEqual([...image.data.subarray(0, 3)], [10, 20, 30], "input left alone");
  assert.throws(() => errorOverlay(image, [0, 1, 1], [0, 0, 1, 1]), /2×2 = 4 pixels/);
});

Deno.test("tiles: starts step by tile − overlap, the last flush with the end", () => {
  assert.deepStrictEqual(tileStarts(32, 32, 16), [0]);
  assert.deepStrictEqual(tileStarts(20, 32, 16), [0]);
  assert.deepStrictEqual(tileStarts(48, 32, 16), [0, 16]);
  assert.deepStrictEqual(tileStarts(33, 32, 0), [0, 1]);
  assert.deepStrictEqual(tileStarts(100, 32, 8), [0, 24, 48, 68]);
  assert.deepStrictEqual(tileStarts(2048, 512, 64), [0, 448, 896, 1344, 1536]);
  const wins = tileWindows(100, 20, 32, 8);
  assert.equal(wins.length, 4);
  assert.ok(wins.every((w) => w.width === 32 && w.height === 20 && w.y === 0));
  assert.throws(() => checkWindowOptions({ tile: 32, overlap: 32 }), /overlap 32/);
  assert.throws(() => checkWindowOptions({ tile: 0 }), /tile 0/);
  assert.throws(() => checkWindowOptions({ batch: 0 }), /batch 0/);
});

Deno.test("predict: sliding window averages the tiles' own whole-image probabilities", async () => {
  const tmp = await tempDir();
  try {
    // A 48×48 pair without labels; tiles of 32 with overlap 16 start at 0 and 16 on each axis,
    // so the centre 16×16 block is covered by all four tiles and the corners by one.
    const data = join(tmp, "scene"), out = join(tmp, "out"), probs = join(tmp, "p.safetensors");
    const weights = join(tmp, "w.safetensors");
    await makeSplitDirs(data);
    await writePair(data, "scene", { size: 48, changed: 0, seed: 5 });
    await Deno.remove(join(data, "label"), { recursive: true });
    await saveModel(weights, "tinycd", { model: "tinycd" });
    await runPredict(predictArgs(
      "--model=tinycd",
      `--weights=${weights}`,
      `--data=${data}`,
      `--out=${out}`,
      `--probs=${probs}`,
      "--tile=32",
      "--overlap=16",
      "--batch=3", // 4 tiles: a full batch and a partial one
    ));
    assert.deepStrictEqual([...Deno.readDirSync(out)].map((e) => e.name), ["scene.png"]);
    const tiled = readSafetensors(probs).get("prob.scene")!;
    assert.deepStrictEqual(tiled.shape, [48, 48]);
    const p = tiled.data as Float32Array;
    assert.ok(p.every((v) => v >= 0 && v <= 1), "probabilities in [0, 1]");

    // Reference: each 32×32 crop run whole (tile ≥ crop), placed and averaged here in float64.
    const model = modelEntry("tinycd").create(0);
    loadCheckpoint(model, weights);
    const [a, b] = [
      await readRgbPng(join(data, "A", "scene.png")),
      await readRgbPng(join(data, "B", "scene.png")),
    ];
    const crop = (img: RgbImage, x0: number, y0: number): RgbImage => {
      const d = new Uint8Array(32 * 32 * 3);
      for (let y = 0; y < 32; y++) {
        d.set(img.data.subarray(((y0 + y) * 48 + x0) * 3, ((y0 + y) * 48 + x0 + 32) * 3), y * 96);
      }
      return { width: 32, height: 32, data: d };
    };
    const sum = new Float64Array(48 * 48), hits = new Float64Array(48 * 48);
    for (const y0 of [0, 16]) {
      for (const x0 of [0, 16]) {
        const prob = await predictProbability(model, {
          width: 32,
          height: 32,
          a: normalizeImage(crop(a, x0, y0), IMAGENET_NORM),
          b: normalizeImage(crop(b, x0, y0), IMAGENET_NORM),
        }, { tile: 512 });
        for (let y = 0; y < 32; y++) {
          for (let x = 0; x < 32; x++) {
            sum[(y0 + y) * 48 + x0 + x] += prob[y * 32 + x];
            hits[(y0 + y) * 48 + x0 + x]++;
          }
        }
      }
    }
    model.dispose();
    assert.equal(hits[0], 1);
    assert.equal(hits[24 * 48 + 24], 4);
    assertClose(p, sum.map((s, i) => s / hits[i]), { atol: 1e-6, rtol: 0, what: "tiled probs" });
    const mask = await readGrayPng(join(out, "scene.png"));
    assert.ok(mask.data.every((m, i) => m === (p[i] > 0.5 ? 255 : 0)), "mask = prob > 0.5");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** The message names `file` in full, or as the dataset errors do: the folder in the heading
 * and the path relative to it on the problem's line. */
function names(msg: string, file: string, dir?: string): boolean {
  return msg.includes(file) || (!!dir && msg.includes(dir) && msg.includes(relative(dir, file)));
}

/** Assert that `fn` rejects with a message naming `file` (see names) and holding `also`. */
async function rejectsNaming(
  fn: () => Promise<unknown>,
  file: string,
  opts: { dir?: string; also?: string } = {},
): Promise<string> {
  try {
    await fn();
  } catch (e) {
    const msg = (e as Error).message;
    assert.ok(names(msg, file, opts.dir), `error should name ${file}:\n${msg}`);
    if (opts.also) assert.ok(msg.includes(opts.also), `error should say "${opts.also}":\n${msg}`);
    return msg;
  }
  throw new Error(`expected an error naming ${file}`);
}

/** Nothing under `parent` but `keep`: no OUT, no staging folder. */
function assertNoOutput(parent: string, keep: string[]): void {
  const left = [...Deno.readDirSync(parent)].map((e) => e.name).filter((n) => !keep.includes(n));
  assert.deepStrictEqual(left, [], `left behind in ${parent}`);
}

Deno.test("predict: each bad input fails naming the file and writes nothing", async () => {
  const tmp = await tempDir();
  try {
    const weights = join(tmp, "w.safetensors");
    await saveModel(weights, "tinycd", { model: "tinycd" });
    let cases = 0;
    /** A fresh folder of two good pairs, then `spoil` returns the path the error must name. */
    const expectFailure = async (
      spoil: (dir: string) => Promise<string>,
      opts: { labels?: boolean; weights?: string; also?: string } = {},
    ) => {
      const dir = join(tmp, `case${++cases}`);
      await makeSplitDirs(dir);
      await writePair(dir, "1", { size: 32, changed: 10, seed: 1 });
      await writePair(dir, "2", { size: 32, changed: 10, seed: 2 });
      if (opts.labels === false) await Deno.remove(join(dir, "label"), { recursive: true });
      const culprit = await spoil(dir);
      const before = [...Deno.readDirSync(tmp)].map((e) => e.name);
      await rejectsNaming(
        () =>
          runPredict(predictArgs(
            "--model=tinycd",
            `--weights=${opts.weights ?? weights}`,
            `--data=${dir}`,
            `--out=${join(tmp, "out")}`,
            `--probs=${join(tmp, "p.safetensors")}`,
          )),
        culprit,
        { dir, also: opts.also },
      );
      assertNoOutput(tmp, before);
    };
    const noLabels = { labels: false };
    const small = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3) };
    const grey = { width: 32, height: 32, data: new Uint8Array(32 * 32).fill(128, 0, 5) };

    // Missing partners, with and without labels.
    await expectFailure(async (dir) => {
      await Deno.remove(join(dir, "B", "2.png"));
      return join(dir, "B", "2.png");
    }, noLabels);
    await expectFailure(async (dir) => {
      await Deno.remove(join(dir, "label", "2.png"));
      return join(dir, "label", "2.png");
    });
    // Sizes that differ, with and without labels.
    for (const opts of [noLabels, {}]) {
      await expectFailure(async (dir) => {
        await writeRgbPng(join(dir, "B", "1.png"), small);
        return join(dir, "B", "1.png");
      }, { ...opts, also: "16×16" });
    }
    // Not a PNG: text under a .png name, and a JPEG by its extension.
    await expectFailure(async (dir) => {
      await Deno.writeTextFile(join(dir, "A", "1.png"), "not an image");
      return join(dir, "A", "1.png");
    }, { also: "not a PNG" });
    await expectFailure(async (dir) => {
      await Deno.writeTextFile(join(dir, "A", "3.jpg"), "x");
      return join(dir, "A", "3.jpg");
    }, noLabels);
    // A label that is not binary.
    await expectFailure(async (dir) => {
      await writeGrayPng(join(dir, "label", "2.png"), grey);
      return join(dir, "label", "2.png");
    }, { also: "not binary" });
    // Checkpoints: another model's (by its metadata), one whose keys do not fit, a missing file.
    const other = join(tmp, "fc.safetensors"), bare = join(tmp, "bare.safetensors");
    await saveModel(other, "fc_siam_diff", { model: "fc_siam_diff" });
    await saveModel(bare, "fc_siam_diff");
    await expectFailure(() => Promise.resolve(other), { weights: other, also: "fc_siam_diff" });
    await expectFailure(() => Promise.resolve(bare), { weights: bare, also: "unexpected" });
    const missing = join(tmp, "nope.safetensors");
    await expectFailure(() => Promise.resolve(missing), { weights: missing, also: "not found" });

    // A file whose header is fine but whose pixels cannot be decoded is caught by the check
    // (every file is decoded before the model runs): nothing at OUT, no new parents of OUT.
    const dir = join(tmp, "late");
    await makeSplitDirs(dir);
    await writePair(dir, "1", { size: 32, seed: 1 });
    await writePair(dir, "2", { size: 32, seed: 2 });
    await Deno.remove(join(dir, "label"), { recursive: true });
    const b2 = join(dir, "B", "2.png");
    await Deno.writeFile(b2, (await Deno.readFile(b2)).subarray(0, 60));
    const before = [...Deno.readDirSync(tmp)].map((e) => e.name);
    await rejectsNaming(
      () =>
        runPredict(predictArgs(
          "--model=tinycd",
          `--weights=${weights}`,
          `--data=${dir}`,
          `--out=${join(tmp, "new", "deeper", "out")}`,
        )),
      b2,
      { dir },
    );
    assertNoOutput(tmp, before);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("predict: a non-empty OUT is kept unless --overwrite, which replaces it", async () => {
  const tmp = await tempDir();
  try {
    const data = join(tmp, "data"), out = join(tmp, "out"), weights = join(tmp, "w.safetensors");
    await makeSplitDirs(data);
    await writePair(data, "1", { size: 32, changed: 50, seed: 21 });
    await saveModel(weights, "tinycd", { model: "tinycd" });
    await Deno.mkdir(out);
    await Deno.writeTextFile(join(out, "old.txt"), "keep me");
    const args = ["--model=tinycd", `--weights=${weights}`, `--data=${data}`, `--out=${out}`];
    await rejectsNaming(() => runPredict(predictArgs(...args)), out, { also: "--overwrite" });
    assert.equal(await Deno.readTextFile(join(out, "old.txt")), "keep me");
    await runPredict(predictArgs(...args, "--overwrite"));
    assert.deepStrictEqual(
      [...Deno.readDirSync(out)].map((e) => e.name).sort(),
      ["1.png", "overlay"],
    );
    assertNoOutput(tmp, ["data", "out", "w.safetensors"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("predict command: exit 1 with a one-line error naming the file; exit 2 on bad flags", async () => {
  const tmp = await tempDir();
  try {
    const data = join(tmp, "data");
    await makeSplitDirs(data);
    await writePair(data, "1", { size: 32, seed: 1 });
    const cli = new URL("../../cli/predict.ts", import.meta.url).pathname;
    const run = async (...args: string[]) => {
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", cli, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: r.code, err: new TextDecoder().decode(r.stderr) };
    };
    const missing = join(tmp, "missing.safetensors");
    const out = join(tmp, "out");
    const r1 = await run("--model", "tinycd", "--weights", missing, "--data", data, "--out", out);
    assert.equal(r1.code, 1, r1.err);
    assert.match(r1.err, /^error: .*missing\.safetensors.*not found/);
    assert.ok(!r1.err.includes("    at "), `no stack trace:\n${r1.err}`);
    const r2 = await run(
      "--model",
      "tinycd",
      "--weights",
      missing,
      "--data",
      data,
      "--out",
      out,
      "--tile",
      "32",
      "--overlap",
      "32",
    );
    assert.equal(r2.code, 2, r2.err);
    assert.match(r2.err, /--overlap: must be smaller than --tile/);
    const r3 = await run("--model", "nope", "--weights", missing, "--data", data, "--out", out);
    assert.equal(r3.code, 2, r3.err);
    assert.match(r3.err, /--model: "nope" is not allowed; allowed values: .*tinycd/);
    assertNoOutput(tmp, ["data"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
