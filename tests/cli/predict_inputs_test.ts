// Issue 18's predict defects, each reproduced on small real folders: --probs inside --out was
// deleted with the old OUT; a pair failing mid-run threw away the finished ones; sizes that are
// not a multiple of the model's stride (TinyCD 100×70) failed deep in the model; a dataset root
// with --split was refused; --model was required though the checkpoint records it; OUT was 0700.

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { PREDICT_HELP, PredictFlags, runPredict } from "../../cli/predict.ts";
import { readGrayPng, readRgbPng } from "../../data/png.ts";
import { noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint, saveCheckpoint } from "../../engine/nn/checkpoint.ts";
import { sigmoid } from "../../engine/ops/elementwise.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { modelEntry } from "../../models/registry.ts";
import { normalizeImage } from "../../train/predict.ts";
import { makeSplitDirs, writePair } from "../data/make_pairs.ts";
import { writeRgbPng } from "../../data/png.ts";
import { assertClose, rng } from "../util.ts";
import { tempDir } from "../temp.ts";

const args = (...argv: string[]) =>
  parseFlagsOrThrow(["--quiet", ...argv], PredictFlags, { help: PREDICT_HELP });
/** With --model, which the commands required before they read it from the checkpoint. */
const margs = (...argv: string[]) => args("--model=tinycd", ...argv);

async function saveTinycd(path: string, info: Record<string, string> = { model: "tinycd" }) {
  await initDevice();
  const m = modelEntry("tinycd").create(3);
  await saveCheckpoint(m, path, info);
  m.dispose();
}

/** An unlabelled split folder of `n` width×height pairs named 1..n. */
async function unlabelled(dir: string, n: number, width = 32, height = 32): Promise<void> {
  for (const f of ["A", "B"]) await Deno.mkdir(join(dir, f), { recursive: true });
  const r = rng(n * 31 + width);
  for (let i = 1; i <= n; i++) {
    for (const f of ["A", "B"]) {
      const data = Uint8Array.from({ length: width * height * 3 }, () => Math.floor(r() * 256));
      await writeRgbPng(join(dir, f, `${i}.png`), { width, height, data });
    }
  }
}

const ls = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("predict: --probs inside --out survives the swap of an existing OUT", async () => {
  const tmp = await tempDir();
  try {
    const data = join(tmp, "data"), out = join(tmp, "out"), w = join(tmp, "w.safetensors");
    await unlabelled(data, 2);
    await saveTinycd(w);
    await Deno.mkdir(out); // an existing (empty) OUT is moved aside and deleted at the end
    const probs = join(out, "probs.safetensors");
    await runPredict(margs(`--weights=${w}`, `--data=${data}`, `--out=${out}`, `--probs=${probs}`));
    assert.deepStrictEqual(ls(out), ["1.png", "2.png", "probs.safetensors"]);
    assert.deepStrictEqual([...readSafetensors(probs).keys()].sort(), ["prob.1", "prob.2"]);
    // Also into a new OUT, in a subfolder of it; and a name that would clash is refused.
    const out2 = join(tmp, "new"), probs2 = join(out2, "p", "probs.safetensors");
    await runPredict(
      margs(`--weights=${w}`, `--data=${data}`, `--out=${out2}`, `--probs=${probs2}`),
    );
    assert.equal(readSafetensors(probs2).size, 2);
    await assert.rejects(
      runPredict(
        margs(
          `--weights=${w}`,
          `--data=${data}`,
          `--out=${join(tmp, "o3")}`,
          `--probs=${join(tmp, "o3", "1.png")}`,
        ),
      ),
      /clash with the masks/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("predict: a pair failing mid-run keeps the finished ones and is reported", async () => {
  const tmp = await tempDir();
  try {
    const data = join(tmp, "data"), out = join(tmp, "out"), w = join(tmp, "w.safetensors");
    await unlabelled(data, 3);
    await saveTinycd(w);
    const b3 = join(data, "B", "3.png");
    // A file that changes after the check: truncated when the first pair is done.
    const bytes = await Deno.readFile(b3);
    const s = await runPredict(
      margs(`--weights=${w}`, `--data=${data}`, `--out=${out}`),
      (done) => {
        if (done === 1) Deno.writeFileSync(b3, bytes.subarray(0, 60));
      },
    );
    assert.deepStrictEqual(ls(out), ["1.png", "2.png"]);
    assert.equal(s.images, 2);
    assert.equal(s.failed.length, 1);
    assert.ok(s.failed[0].message.includes(b3), s.failed[0].message);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("predict: an unlabelled file that cannot be decoded stops the run before it starts", async () => {
  const tmp = await tempDir();
  try {
    const data = join(tmp, "data"), w = join(tmp, "w.safetensors");
    await unlabelled(data, 2);
    await saveTinycd(w);
    const b2 = join(data, "B", "2.png");
    // The header survives (the old check read only that), the pixel data does not.
    await Deno.writeFile(b2, (await Deno.readFile(b2)).subarray(0, 60));
    let progressed = 0;
    await assert.rejects(
      runPredict(
        margs(`--weights=${w}`, `--data=${data}`, `--out=${join(tmp, "out")}`),
        () => progressed++,
      ),
      (e: Error) => e.message.includes("2.png"),
    );
    assert.equal(progressed, 0, "no pair ran before the check failed");
    assert.deepStrictEqual(ls(tmp), ["data", "w.safetensors"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("predict: TinyCD on 30×20 pads to its divisor 16 (32×32) and crops back; tiles of 19 run", async () => {
  const tmp = await tempDir();
  try {
    const data = join(tmp, "data"), out = join(tmp, "out"), w = join(tmp, "w.safetensors");
    const probs = join(tmp, "p.safetensors");
    await unlabelled(data, 1, 30, 20);
    await saveTinycd(w);
    await runPredict(margs(`--weights=${w}`, `--data=${data}`, `--out=${out}`, `--probs=${probs}`));
    const p = readSafetensors(probs).get("prob.1")!;
    assert.deepStrictEqual(p.shape, [20, 30]);
    const mask = await readGrayPng(join(out, "1.png"));
    assert.deepStrictEqual([mask.width, mask.height], [30, 20]);

    // Reference: the normalised images zero-padded to 32×32 here, run whole, cropped. (32×32:
    // the shape the other tests compile; a new shape costs ~20 s of kernel compiles on Mesa.)
    const entry = modelEntry("tinycd");
    const model = entry.create(0).eval();
    loadCheckpoint(model, w);
    const padded = async (file: string) => {
      const x = normalizeImage(await readRgbPng(file), entry.normalize);
      const y = new Float32Array(3 * 32 * 32);
      for (let c = 0; c < 3; c++) {
        for (let r = 0; r < 20; r++) {
          y.set(x.subarray((c * 20 + r) * 30, (c * 20 + r + 1) * 30), (c * 32 + r) * 32);
        }
      }
      return tensor(y, [1, 3, 32, 32]);
    };
    const [a, b] = [await padded(join(data, "A", "1.png")), await padded(join(data, "B", "1.png"))];
    const full = scope(() => noGrad(() => sigmoid(model.forward(a, b))));
    const all = (await full.read()) as Float32Array;
    full.dispose();
    a.dispose();
    b.dispose();
    model.dispose();
    const want = new Float32Array(20 * 30);
    for (let r = 0; r < 20; r++) want.set(all.subarray(r * 32, r * 32 + 30), r * 30);
    assertClose(p.data as Float32Array, want, { atol: 1e-6, rtol: 0, what: "padded probs" });

    // A tile that is not a multiple of 16 pads each tile (19 → 32).
    await runPredict(margs(
      `--weights=${w}`,
      `--data=${data}`,
      `--out=${join(tmp, "tiled")}`,
      "--tile=19",
      "--overlap=4",
      "--batch=1", // [1, 3, 32, 32]: the shape the 32² tests compile anyway
    ));
    assert.deepStrictEqual(ls(join(tmp, "tiled")), ["1.png"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("predict: a dataset root with --split, --model from the checkpoint, OUT mode from the umask", async () => {
  const tmp = await tempDir();
  try {
    const root = join(tmp, "root"), w = join(tmp, "w.safetensors");
    for (const [split, names] of [["train", ["1", "2"]], ["test", ["7"]]] as const) {
      await makeSplitDirs(join(root, split));
      for (const n of names) await writePair(join(root, split), n, { size: 32, changed: 40 });
    }
    await saveTinycd(w);
    const out = join(tmp, "out");
    const s = await runPredict(args(`--weights=${w}`, `--data=${root}`, `--out=${out}`));
    assert.equal(s.model, "tinycd");
    assert.deepStrictEqual(ls(out), ["7.png", "overlay"]);
    const umask = Deno.umask();
    assert.equal((await Deno.stat(out)).mode! & 0o777, 0o777 & ~umask, "OUT follows the umask");
    const train = await runPredict(
      args(`--weights=${w}`, `--data=${root}`, "--split=train", `--out=${join(tmp, "t")}`),
    );
    assert.equal(train.images, 2);
    // --split with a split folder is refused rather than ignored.
    await assert.rejects(
      runPredict(args(`--weights=${w}`, `--data=${join(root, "test")}`, "--split=val", "--out=x")),
      /is a split folder/,
    );
    // A checkpoint without a recorded model needs --model, and says so.
    const bare = join(tmp, "bare.safetensors");
    await saveTinycd(bare, {});
    await assert.rejects(
      runPredict(args(`--weights=${bare}`, `--data=${root}`, `--out=${join(tmp, "b")}`)),
      /does not record its model; pass --model/,
    );
    await runPredict(
      args("--model=tinycd", `--weights=${bare}`, `--data=${root}`, `--out=${join(tmp, "b")}`),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
