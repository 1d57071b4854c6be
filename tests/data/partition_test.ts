import assert from "node:assert/strict";
import { join } from "node:path";
import { carOf, changedPixels } from "../../data/car.ts";
import { carHistogramSvg, histogram, writeCarHistogram } from "../../data/car_histogram.ts";
import { binarizeLabel, labelEncoding, labelValues } from "../../data/label.ts";
import {
  buildManifest,
  customScheme,
  partitionMembers,
  partitionName,
  partitionOf,
  readManifest,
  THREE_TEACHERS,
  TWO_TEACHERS,
  writeManifest,
} from "../../data/partition.ts";
import { tempDir } from "../temp.ts";

Deno.test("car: 0/255 and 0/1 labels count the same; empty label is 0", () => {
  const a = Uint8Array.from([0, 255, 255, 0, 0, 0, 0, 0]);
  const b = Uint8Array.from([0, 1, 1, 0, 0, 0, 0, 0]);
  assert.equal(changedPixels(a), 2);
  assert.equal(carOf(a), 0.25);
  assert.equal(carOf(b), 0.25);
  assert.equal(carOf(new Uint8Array(0)), 0);
  assert.equal(carOf(new Uint8Array(9).fill(255)), 1);
  // Binarised at > 127 (and 1 for 0/1 labels).
  assert.deepStrictEqual([...binarizeLabel(Uint8Array.from([0, 1, 127, 128, 255]))], [
    0,
    1,
    0,
    1,
    1,
  ]);
  assert.deepStrictEqual(labelValues(Uint8Array.from([255, 0, 255, 3])), [0, 3, 255]);
  assert.equal(labelEncoding([0, 255]), "0/255");
  assert.equal(labelEncoding([0, 1]), "0/1");
  assert.equal(labelEncoding([0]), "0/255");
  assert.equal(labelEncoding([0, 1, 255]), null);
});

Deno.test("partition: three teachers at the boundaries (≤ 0.05 small, ≤ 0.2 medium)", () => {
  const t = THREE_TEACHERS.thresholds;
  assert.equal(partitionOf(0, t), 0);
  assert.equal(partitionOf(0.05, t), 0);
  assert.equal(partitionOf(0.05 + 1e-12, t), 1);
  assert.equal(partitionOf(0.2, t), 1);
  assert.equal(partitionOf(0.2 + 1e-12, t), 2);
  assert.equal(partitionOf(1, t), 2);
  // A CAR computed as a ratio of pixel counts lands exactly on the threshold.
  assert.equal(partitionName(500 / 10000, THREE_TEACHERS), "small");
  assert.equal(partitionName(2000 / 10000, THREE_TEACHERS), "medium");
  assert.equal(partitionName(2001 / 10000, THREE_TEACHERS), "large");
});

Deno.test("partition: two teachers split at 0.10; custom thresholds", () => {
  assert.equal(partitionName(0.1, TWO_TEACHERS), "small");
  assert.equal(partitionName(0.1000001, TWO_TEACHERS), "large");
  const four = customScheme([0.01, 0.1, 0.5]);
  assert.deepStrictEqual(four.names, ["p0", "p1", "p2", "p3"]);
  assert.equal(partitionOf(0.3, four.thresholds), 2);
  assert.deepStrictEqual(customScheme([0.3]).names, ["small", "large"]);
  assert.throws(() => customScheme([0.2, 0.1]), /must increase/);
  assert.throws(() => customScheme([0, 0.5]), /not in \(0, 1\)/);
  assert.throws(() => customScheme([0.1], ["a"]), /need 2 partition names/);
  // No thresholds: one partition of every pair (the automatic choice's K = 1).
  assert.deepStrictEqual(customScheme([]), { thresholds: [], names: ["all"] });
});

Deno.test("manifest: round trip through JSON, and edits that disagree are rejected", async () => {
  const dir = await tempDir();
  try {
    const pairs = [
      { name: "a", car: 0 },
      { name: "b", car: 0.05 },
      { name: "c", car: 0.12 },
      { name: "d", car: 0.9 },
    ];
    const m = buildManifest(pairs, THREE_TEACHERS);
    assert.deepStrictEqual(m.pairs.map((p) => p.partition), ["small", "small", "medium", "large"]);
    assert.deepStrictEqual(partitionMembers(m), { small: ["a", "b"], medium: ["c"], large: ["d"] });
    const path = join(dir, "partition.json");
    await writeManifest(path, m);
    assert.deepStrictEqual(await readManifest(path), m);

    const edited = structuredClone(m);
    edited.pairs[2].partition = "large";
    await writeManifest(path, edited);
    await assert.rejects(readManifest(path), /pair c has CAR 0\.12 and partition "large"/);
    await Deno.writeTextFile(path, JSON.stringify({ thresholds: [0.1], names: ["x"], pairs: [] }));
    await assert.rejects(
      readManifest(path),
      /partition\.json: 1 thresholds need 2 partition names/,
    );
    await Deno.writeTextFile(path, JSON.stringify({ thresholds: [], names: [], pairs: [] }));
    await assert.rejects(readManifest(path), /invalid manifest at names/);
    await Deno.writeTextFile(path, "{ not json");
    await assert.rejects(readManifest(path), /not a readable JSON manifest/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("histogram: counts per bin, SVG with one panel per split, axes and log scale", async () => {
  assert.deepStrictEqual(histogram([0, 0.01, 0.049, 0.05, 0.5, 1], 20), [
    3,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    1,
  ]);
  const series = [
    { label: "train", cars: [0, 0.01, 0.02, 0.3, 1] },
    { label: "val", cars: [0.04] },
    { label: "test <all>", cars: [] },
  ];
  const svg = carHistogramSvg(series, { logScale: true, thresholds: [0.05, 0.2], title: "CAR" });
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.equal(svg.match(/<g>/g)?.length, 3);
  assert.ok(svg.includes("train (n = 5)") && svg.includes("test &#60;all&#62; (n = 0)"));
  assert.equal(svg.match(/CAR \(%\)/g)?.length, 3);
  assert.ok(svg.includes("Pairs (log)"));
  assert.equal(svg.match(/stroke-dasharray/g)?.length, 6); // two thresholds in three panels
  assertWellFormed(svg);
  const linear = carHistogramSvg([{ label: "x", cars: Array(37).fill(0) }]);
  assert.ok(linear.includes(">40</text>"), "linear axis reaches a round value above 37");
  const dir = await tempDir();
  try {
    await writeCarHistogram(join(dir, "h.svg"), series);
    assert.ok((await Deno.readTextFile(join(dir, "h.svg"))).includes("</svg>"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Tags nest and close properly (a cheap XML well-formedness check). */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  for (const [, close, name, self] of xml.matchAll(/<(\/?)([\w:-]+)[^>]*?(\/?)>/g)) {
    if (self) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the wrong tag`);
    else stack.push(name);
  }
  assert.deepStrictEqual(stack, [], "unclosed tags");
}
