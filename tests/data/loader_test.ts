import assert from "node:assert/strict";
import { join } from "node:path";
import { carOfFile } from "../../data/car.ts";
import { listSplit } from "../../data/dataset.ts";
import {
  type Batch,
  batchIndices,
  epochOrder,
  IMAGENET,
  openLoader,
  stepsPerEpoch,
} from "../../data/loader.ts";
import { readGrayPng, readRgbPng, writeRgbPng } from "../../data/png.ts";
import { haveLevir, LEVIR, writePair, writeSplit } from "./make_pairs.ts";
import { tempDir } from "../temp.ts";

Deno.test("order: a pure function of (seed, step), a permutation per epoch", () => {
  const n = 10, b = 3;
  assert.equal(stepsPerEpoch(n, b, true), 3);
  assert.equal(stepsPerEpoch(n, b, false), 4);
  const e0 = epochOrder(n, 7, 0), e1 = epochOrder(n, 7, 1);
  assert.deepStrictEqual([...e0].sort((x, y) => x - y), [...Array(n).keys()]);
  assert.notDeepStrictEqual(e0, e1, "epochs reshuffle");
  assert.deepStrictEqual(epochOrder(n, 7, 1), e1, "same seed, same order");
  assert.notDeepStrictEqual(epochOrder(n, 8, 0), e0, "another seed, another order");
  // Step 4 is the second batch of epoch 1 (3 steps per epoch with the last pair dropped).
  assert.deepStrictEqual(batchIndices(n, b, 7, 4), e1.slice(3, 6));
  assert.deepStrictEqual(batchIndices(n, b, 7, 2), e0.slice(6, 9));
  assert.deepStrictEqual(batchIndices(n, 4, 7, 2, { shuffle: false }), [8, 9]);
  assert.throws(() => batchIndices(2, 3, 0, 0), /make no batch/);
});

async function withPairs(n: number, fn: (dir: string) => Promise<void>) {
  const dir = await tempDir({ prefix: "cd_loader_" });
  try {
    await writeSplit(dir, n, { size: 16, changed: 40 });
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function take(loader: ReturnType<typeof openLoader>, k: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for (let i = 0; i < k; i++) out.push((await loader.nextBatch())!);
  return out;
}

Deno.test("loader: same seed → same batches; resuming at step s reproduces them", async () => {
  await withPairs(10, async (dir) => {
    const pairs = await listSplit(dir);
    const opts = { pairs, batchSize: 3, seed: 7, cropSize: 8, workers: 2 };
    const first = openLoader(opts);
    const run = await take(first, 5); // crosses into the second epoch
    first.close();
    run.forEach((batch, step) => {
      assert.equal(batch.step, step);
      assert.equal(batch.epoch, Math.floor(step / 3));
      assert.deepStrictEqual(batch.indices, batchIndices(10, 3, 7, step));
      assert.deepStrictEqual(batch.names, batch.indices.map((i) => pairs[i].name));
      assert.deepStrictEqual([batch.size, batch.height, batch.width], [3, 8, 8]);
      assert.equal(batch.a.length, 3 * 3 * 64);
      assert.equal(batch.label.length, 3 * 64);
    });
    const resumed = openLoader({ ...opts, startStep: 3, prefetch: 1, workers: 1 });
    const again = await take(resumed, 2);
    resumed.close();
    for (let i = 0; i < 2; i++) {
      assert.deepStrictEqual(again[i].names, run[3 + i].names);
      assert.deepStrictEqual(again[i].a, run[3 + i].a, "same crops and pixels");
      assert.deepStrictEqual(again[i].b, run[3 + i].b);
      assert.deepStrictEqual(again[i].label, run[3 + i].label);
    }
  });
});

Deno.test("loader: a crop is a window of the full image, the same in A, B and label", async () => {
  await withPairs(4, async (dir) => {
    const pairs = await listSplit(dir);
    const loader = openLoader({ pairs, batchSize: 1, seed: 3, cropSize: 8, workers: 1 });
    const [batch] = await take(loader, 1);
    loader.close();
    const pair = pairs.find((p) => p.name === batch.names[0])!;
    const full = await readRgbPng(pair.a), fullB = await readRgbPng(pair.b);
    const label = await readGrayPng(pair.label);
    const matches = (img: Uint8Array, plane: Float32Array, x0: number, y0: number) => {
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < 8; y++) {
          for (let x = 0; x < 8; x++) {
            const v = img[((y0 + y) * 16 + x0 + x) * 3 + c] / 255;
            if (Math.abs(plane[c * 64 + y * 8 + x] - v) > 1e-6) return false;
          }
        }
      }
      return true;
    };
    const hits: [number, number][] = [];
    for (let y0 = 0; y0 <= 8; y0++) {
      for (let x0 = 0; x0 <= 8; x0++) if (matches(full.data, batch.a, x0, y0)) hits.push([x0, y0]);
    }
    assert.equal(hits.length, 1, "exactly one window position matches");
    const [x0, y0] = hits[0];
    assert.ok(matches(fullB.data, batch.b, x0, y0), "B cropped at the same place");
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const want = label.data[(y0 + y) * 16 + x0 + x] > 127 ? 1 : 0;
        assert.equal(batch.label[y * 8 + x], want);
      }
    }
  });
});

Deno.test("loader: evaluation order, last partial batch, values and normalisation", async () => {
  await withPairs(10, async (dir) => {
    const pairs = await listSplit(dir);
    const loader = openLoader({ pairs, batchSize: 4, shuffle: false, workers: 2 });
    assert.equal(loader.stepsPerEpoch, 3);
    const sizes: number[] = [], names: string[] = [];
    for await (const b of loader) {
      sizes.push(b.size);
      names.push(...b.names);
      if (b.step === 0) {
        const img = await readRgbPng(pairs[1].a);
        // Sample 1, channel 2, pixel (3, 5): CHW layout, value / 255.
        assert.equal(
          b.a[(1 * 3 + 2) * 256 + 5 * 16 + 3],
          Math.fround(img.data[(5 * 16 + 3) * 3 + 2] / 255),
        );
        assert.ok(b.label instanceof Uint32Array);
        assert.equal(b.label.subarray(0, 256).reduce((s, v) => s + v, 0), 40);
        assert.ok(b.label.every((v) => v === 0 || v === 1));
      }
    }
    assert.deepStrictEqual(sizes, [4, 4, 2]);
    assert.deepStrictEqual(names, pairs.map((p) => p.name));
    assert.equal(await loader.nextBatch(), null);

    const norm = openLoader({
      pairs,
      batchSize: 2,
      shuffle: false,
      normalize: IMAGENET,
      workers: 1,
    });
    const [b] = await take(norm, 1);
    norm.close();
    const img = await readRgbPng(pairs[0].a);
    for (let c = 0; c < 3; c++) {
      const want = (img.data[c] / 255 - IMAGENET.mean[c]) / IMAGENET.std[c];
      assert.ok(Math.abs(b.a[c * 256] - want) < 1e-5, `channel ${c}`);
    }
  });
});

Deno.test("loader: errors name the file; breaking out of a loop closes the workers", async () => {
  await withPairs(3, async (dir) => {
    const pairs = await listSplit(dir);
    const small = openLoader({ pairs, batchSize: 1, cropSize: 32, workers: 1 });
    await assert.rejects(
      small.nextBatch(),
      /1[0-9]?\.png: image 16×16 is smaller than the crop size 32/,
    );
    small.close();

    await writePair(dir, "big", { size: 20 });
    const mixed = openLoader({
      pairs: await listSplit(dir),
      batchSize: 4,
      shuffle: false,
      workers: 1,
    });
    await assert.rejects(mixed.nextBatch(), /differ in size.*set a crop size/);
    mixed.close();

    await writeRgbPng(join(dir, "B", "1.png"), { width: 4, height: 4, data: new Uint8Array(48) });
    const broken = openLoader({ pairs, batchSize: 1, shuffle: false, workers: 1 });
    await assert.rejects(broken.nextBatch(), /B\/1\.png: size 4×4 differs from/);
    broken.close();

    const endless = openLoader({ pairs: pairs.slice(1), batchSize: 1, workers: 1 });
    let seen = 0;
    for await (const _ of endless) if (++seen === 3) break; // calls return() → close()
    assert.equal(await endless.nextBatch(), null);
  });
});

Deno.test("loader: the levir-cd fixture in batches of 4, ImageNet-normalised", async () => {
  if (!(await haveLevir())) return;
  const pairs = await listSplit(LEVIR);
  const cars = new Map(
    await Promise.all(pairs.map(async (p) => [p.name, await carOfFile(p.label)] as const)),
  );
  const loader = openLoader({
    pairs,
    batchSize: 4,
    shuffle: false,
    normalize: IMAGENET,
    workers: 2,
  });
  let total = 0;
  for await (const b of loader) {
    assert.deepStrictEqual([b.height, b.width], [256, 256]);
    assert.equal(b.a.length, b.size * 3 * 256 * 256);
    for (let k = 0; k < b.size; k++) {
      const changed = b.label.subarray(k * 65536, (k + 1) * 65536).reduce((s, v) => s + v, 0);
      assert.equal(changed / 65536, cars.get(b.names[k]), `CAR of ${b.names[k]}`);
    }
    let lo = Infinity, hi = -Infinity;
    for (const v of b.a) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    assert.ok(lo >= -2.2 && hi <= 2.7 && hi - lo > 1, `normalised range ${lo}..${hi}`);
    total += b.size;
  }
  assert.equal(total, 11);
});

Deno.test("loader: a process that reads one pass to the end exits on its own", async () => {
  await withPairs(3, async (dir) => {
    const loader = new URL("../../data/loader.ts", import.meta.url).href;
    const dataset = new URL("../../data/dataset.ts", import.meta.url).href;
    const script = join(dir, "one_pass.ts");
    await Deno.writeTextFile(
      script,
      `import { openLoader } from "${loader}";\nimport { listSplit } from "${dataset}";\n` +
        `const pairs = await listSplit(${JSON.stringify(dir)});\n` +
        `let n = 0;\nfor await (const b of openLoader({ pairs, batchSize: 2, shuffle: false })) n += b.size;\n` +
        `console.log("pairs", n);\n`,
    );
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", config, script],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000), // a leaked worker would keep it alive until killed
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "pairs 3");
  });
});
