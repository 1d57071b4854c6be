// Issue 18 items 7–9 on the data side: files that were read wrongly or refused wrongly —
// symbolic links, upper-case extensions, a data root that does not exist, an empty test/,
// no validation pairs, 12-bit data in 16-bit PNGs, alpha and grayscale-with-RGB pairs.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkDataset,
  checkSplit,
  DatasetError,
  listSplit,
  openDataset,
} from "../../data/dataset.ts";
import { loadSample } from "../../data/sample.ts";
import { encode } from "fast-png";
import { writeGrayPng } from "../../data/png.ts";
import { makeSplitDirs, writePair, writeSplit } from "./make_pairs.ts";
import { tempDir } from "../temp.ts";

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir({ prefix: "cd_odd_" });
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

Deno.test("odd files: symlinked images are followed and .PNG is a PNG", async () => {
  await withTemp(async (root) => {
    const split = join(root, "val");
    await writeSplit(split, 2);
    // A/1.png becomes a link to a copy elsewhere; B/2.png is renamed 2.PNG; label/2 → 2.Png.
    const elsewhere = join(root, "store");
    await Deno.mkdir(elsewhere);
    await Deno.rename(join(split, "A", "1.png"), join(elsewhere, "a1.png"));
    await Deno.symlink(join(elsewhere, "a1.png"), join(split, "A", "1.png"));
    await Deno.rename(join(split, "B", "2.png"), join(split, "B", "2.PNG"));
    await Deno.rename(join(split, "label", "2.png"), join(split, "label", "2.Png"));
    await writePair(split, "3");
    await Deno.rename(join(split, "A", "3.png"), join(split, "A", "3.PNG"));
    const pairs = await checkSplit(split);
    assert.deepStrictEqual(pairs.map((p) => p.name), ["1", "2", "3"]);
    assert.equal(pairs[1].b, join(split, "B", "2.PNG"));
    assert.equal(pairs[1].label, join(split, "label", "2.Png"));
    for (const p of pairs) assert.equal((await loadSample(p)).width, 8);
    const listed = await listSplit(split);
    assert.deepStrictEqual(listed.map((p) => p.a), pairs.map((p) => p.a));
    // A dangling link is a missing file, and two spellings of one name are named.
    await Deno.symlink(join(elsewhere, "gone.png"), join(split, "A", "4.png"));
    await writePair(split, "5");
    await Deno.copyFile(join(split, "A", "5.png"), join(split, "A", "5.PNG"));
    const err = await datasetError(checkSplit(split));
    assert.match(err.message, /A\/5\.png: two files for one name: 5\.PNG and 5\.png/);
    assert.match(err.message, /A\/4\.png: symbolic link to a missing file \(.*gone\.png\)/);
    assert.equal(err.problems.length, 2, err.message);
  });
});

Deno.test("odd files: a data root that does not exist is named as such", async () => {
  await withTemp(async (dir) => {
    for (const open of [checkDataset, openDataset]) {
      const err = await datasetError(open(join(dir, "no_such_root")));
      assert.match(
        err.message,
        /no_such_root: does not exist\n\s+fix: --data takes the dataset root/,
      );
      assert.doesNotMatch(err.message, /train: folder missing/);
    }
  });
});

Deno.test("odd files: an empty test/ does not block training; --val-count 0 is refused", async () => {
  await withTemp(async (root) => {
    await writeSplit(join(root, "train"), 4);
    await makeSplitDirs(join(root, "test")); // test/{A,B,label} with no files
    const notes: string[] = [];
    const ds = await checkDataset(root, { valCount: 1, onNote: (n) => notes.push(n) });
    assert.deepStrictEqual([ds.train.length, ds.val.length, ds.test.length], [3, 1, 0]);
    assert.deepStrictEqual(notes, [`${join(root, "test")} is empty: skipped`]);
    assert.equal((await openDataset(root, { valCount: 1 })).test.length, 0);
    for (const open of [checkDataset, openDataset]) {
      const err = await datasetError(open(root, { valCount: 0 }));
      assert.match(err.message, /validation count of 0 leaves nothing to validate/);
      assert.match(err.message, /fix: pass --val-count 1 or more, or add ROOT\/val/);
    }
    // A test/ with files but no labels is still a problem.
    await writePair(join(root, "test"), "t");
    await Deno.remove(join(root, "test", "label", "t.png"));
    assert.match((await datasetError(checkDataset(root, { valCount: 1 }))).message, /t\.png/);
  });
});

Deno.test("odd files: RGBA alpha is ignored and said in the summary; gray A with RGB B is refused", async () => {
  await withTemp(async (root) => {
    const split = join(root, "val");
    await writeSplit(split, 3);
    // Pair 1: A is RGBA with see-through pixels; pair 2: A is RGBA, fully opaque (no note).
    for (const [name, alpha] of [["1", 100], ["2", 255]] as const) {
      const rgba = new Uint8Array(8 * 8 * 4).fill(alpha);
      await Deno.writeFile(
        join(split, "A", `${name}.png`),
        encode({ width: 8, height: 8, data: rgba, channels: 4 }),
      );
    }
    const notes: string[] = [];
    assert.equal((await checkSplit(split, { onNote: (n) => notes.push(n) })).length, 3);
    assert.deepStrictEqual(notes, [
      "1 image (e.g. A/1.png): alpha channel with see-through pixels: ignored (read as opaque)",
    ]);
    // Pair 3: B grayscale, A colour → refused, naming the gray file.
    await writeGrayPng(join(split, "B", "3.png"), {
      width: 8,
      height: 8,
      data: new Uint8Array(64),
    });
    const err = await datasetError(checkSplit(split));
    assert.match(err.message, /B\/3\.png: B is grayscale but A\/3 is colour/);
    assert.equal(err.problems.length, 1, err.message);
  });
});
