import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkDataset,
  checkSplit,
  DatasetError,
  listSplit,
  openDataset,
  openSplit,
} from "../../data/dataset.ts";
import { compareNames } from "../../data/pair_files.ts";
import { writeGrayPng, writeRgbPng } from "../../data/png.ts";
import { haveLevir, LEVIR, makeSplitDirs, writePair, writeSplit } from "./make_pairs.ts";
import { tempDir } from "../temp.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir({ prefix: "cd_dataset_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function datasetError(p: Promise<unknown>): Promise<DatasetError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DatasetError, `expected a DatasetError, got ${e}`);
    return e;
  }
  throw new Error("expected a DatasetError");
}

Deno.test("names sort naturally: 2 before 10, then by text", () => {
  const names = ["10", "2", "a10", "a2", "1", "b", "007", "7"];
  assert.deepStrictEqual(names.sort(compareNames), ["1", "2", "7", "007", "10", "a2", "a10", "b"]);
});

Deno.test("dataset: train and test without val → the first 100 training pairs validate", async () => {
  await withTemp(async (root) => {
    await writeSplit(join(root, "train"), 130);
    await writeSplit(join(root, "test"), 3);
    const ds = await openDataset(root);
    assert.equal(ds.valFromTrain, true);
    assert.equal(ds.val.length, 100);
    assert.equal(ds.train.length, 30);
    assert.equal(ds.test.length, 3);
    // Natural order: val is 1..100, train 101..130, disjoint.
    assert.deepStrictEqual(ds.val.map((p) => p.name).slice(0, 3), ["1", "2", "3"]);
    assert.equal(ds.val[99].name, "100");
    assert.equal(ds.train[0].name, "101");
    const small = await openDataset(root, { valCount: 10 });
    assert.deepStrictEqual([small.val.length, small.train.length], [10, 120]);
    // The validator applies the same rule and returns CAR and size per pair.
    const checked = await checkDataset(root, { valCount: 10, workers: 2 });
    assert.deepStrictEqual(checked.val.map((p) => p.name), small.val.map((p) => p.name));
    assert.equal(checked.train.length, 120);
    assert.equal(checked.train[0].width, 8);
    // openSplit(val) on a root without val/ follows the rule too.
    assert.equal((await openSplit(root, "val")).length, 100);
    const err = await datasetError(openDataset(root, { valCount: 500 }));
    assert.match(err.message, /train has only 130 pairs to take 500 from/);
  });
});

Deno.test("dataset: an explicit val folder is used as is; flat folders open as one split", async () => {
  await withTemp(async (root) => {
    await writeSplit(join(root, "train"), 4);
    await writeSplit(join(root, "val"), 2, { changed: 16 });
    const ds = await openDataset(root);
    assert.deepStrictEqual([ds.train.length, ds.val.length, ds.test.length], [4, 2, 0]);
    assert.equal(ds.valFromTrain, false);
    const val = await openSplit(join(root, "val"));
    assert.deepStrictEqual(val.map((p) => p.name), ["1", "2"]);
    assert.equal(val[0].label, join(root, "val", "label", "1.png"));
    const checked = await checkSplit(join(root, "val"));
    assert.equal(checked[0].car, 16 / 64);
    const err = await datasetError(openDataset(join(root, "val")));
    assert.match(err.message, /is a single split/);
  });
});

Deno.test("checker: one error lists every bad file with its problem and fix", async () => {
  await withTemp(async (root) => {
    const train = join(root, "train");
    await writeSplit(train, 3); // 1, 2, 3 are good
    await writePair(train, "nob");
    await Deno.remove(join(train, "B", "nob.png")); // missing partner in B
    await writePair(train, "nolabel");
    await Deno.remove(join(train, "label", "nolabel.png")); // missing label
    await writeRgbPng(join(train, "B", "orphan.png"), {
      width: 8,
      height: 8,
      data: new Uint8Array(192),
    });
    await writePair(train, "size");
    await writeRgbPng(join(train, "B", "size.png"), {
      width: 9,
      height: 8,
      data: new Uint8Array(216),
    });
    await writePair(train, "corrupt");
    const bytes = await Deno.readFile(join(train, "A", "corrupt.png"));
    await Deno.writeFile(join(train, "A", "corrupt.png"), bytes.subarray(0, bytes.length - 20));
    await writePair(train, "text");
    await Deno.writeTextFile(join(train, "label", "text.png"), "not a png at all");
    await writePair(train, "gray");
    const values = Uint8Array.from({ length: 64 }, (_, i) => [0, 255, 128, 3][i % 4]);
    await writeGrayPng(join(train, "label", "gray.png"), { width: 8, height: 8, data: values });
    await writePair(train, "ones", { changed: 5, on: 1 }); // {0, 1} labels are fine
    await Deno.writeTextFile(join(train, "A", "photo.jpg"), "jpeg bytes");
    await Deno.writeTextFile(join(train, "A", ".DS_Store"), "ignored");
    await Deno.writeTextFile(join(train, "README.txt"), "ignored");
    const test = join(root, "test");
    await makeSplitDirs(test);
    await Deno.remove(join(test, "label"));
    await writePair(test, "t1").catch(() => {}); // label write fails: folder is gone

    const err = await datasetError(checkDataset(root, { valCount: 1 }));
    const text = err.message;
    const expect: [string, RegExp][] = [
      ["train/B/nob.png", /missing: A\/nob\.png and label\/nob\.png have no partner/],
      ["train/label/nolabel.png", /missing: A\/nolabel\.png and B\/nolabel\.png have no partner/],
      ["train/A/orphan.png", /missing: B\/orphan\.png has no partner/],
      ["train/label/orphan.png", /missing: B\/orphan\.png has no partner/],
      ["train/B/size.png", /size 9×8 differs from A\/size\.png \(8×8\)/],
      ["train/A/corrupt.png", /corrupt PNG/],
      ["train/label/text.png", /not a PNG/],
      ["train/label/gray.png", /not binary.*\{0, 3, 128, 255\}; offending: 3, 128/],
      ["train/A/photo.jpg", /not a PNG file \(\.jpg\)/],
      ["test/label", /folder missing/],
    ];
    for (const [file, problem] of expect) {
      const line = text.split("\n").find((l) => l.trim().startsWith(`${file}:`));
      assert.ok(line, `no line for ${file} in:\n${text}`);
      assert.match(line, problem);
    }
    assert.equal(err.problems.length, expect.length, text);
    assert.match(text, /has 10 problems/);
    assert.match(text, /fix: add B\/nob\.png, or remove A\/nob\.png and label\/nob\.png/);
    assert.match(text, /fix: labels must hold only 0 and 255 \(or only 0 and 1\)/);
    for (const good of ["train/A/1.png", "ones", ".DS_Store", "README"]) {
      assert.ok(!text.includes(good), `${good} should not be reported:\n${text}`);
    }
  });
});

Deno.test("checker: empty and missing folders", async () => {
  await withTemp(async (root) => {
    await makeSplitDirs(join(root, "empty"));
    const err = await datasetError(checkSplit(join(root, "empty")));
    assert.match(err.message, /A: no PNG pairs/);
    const none = await datasetError(checkDataset(join(root, "nothing")));
    assert.match(none.message, /nothing: does not exist/);
    await assert.rejects(listSplit(join(root, "nothing")), DatasetError);
  });
});

Deno.test("checker: the levir-cd fixture is valid; CARs match its README", async () => {
  if (!(await haveLevir())) return;
  const pairs = await checkSplit(LEVIR);
  assert.equal(pairs.length, 11);
  const car = Object.fromEntries(pairs.map((p) => [p.name, p.car]));
  assert.equal(car["train_386_0512_0768"], 0);
  assert.ok(Math.abs(car["test_2_0000_0000"] - 0.25) < 0.01, `CAR ${car["test_2_0000_0000"]}`);
  assert.ok(pairs.every((p) => p.width === 256 && p.height === 256));
});
