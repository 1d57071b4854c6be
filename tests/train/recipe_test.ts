// The trainer honours Open-CD recipe options (paramwise groups, OHEM loss, Changer's
// augmentation) and --pretrained loads a backbone under mmseg names, refusing a bad file by name
// before anything is written.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { Conv2d } from "../../engine/nn/conv.ts";
import { Module } from "../../engine/nn/module.ts";
import { BatchNorm2d } from "../../engine/nn/norm.ts";
import { sub } from "../../engine/ops/elementwise.ts";
import { Random } from "../../engine/random.ts";
import { readSafetensors, saveTensors } from "../../engine/safetensors.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";
import type { ChangeDetector } from "../../models/model.ts";
import { IMAGENET_NORM, type ModelEntry, MODELS } from "../../models/registry.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { loadPretrained } from "../../train/pretrained.ts";
import { augmentOptions, recipeMultipliers, train } from "../../train/trainer.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-recipe-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 24, size: 16, seed: 3, val: 4, test: 4 });
const ds = await checkDataset(data);

class Backbone extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  constructor(rng: Random) {
    super();
    this.conv = this.child("conv", new Conv2d(3, 4, { kernel: 3, padding: 1 }, rng));
    this.bn = this.child("bn", new BatchNorm2d(4));
  }
}

class Head extends Module {
  readonly convSeg: Conv2d;
  constructor(rng: Random) {
    super();
    this.convSeg = this.child("conv_seg", new Conv2d(4, 2, { kernel: 1 }, rng));
  }
}

/** A tiny two-class detector with Open-CD-style names: backbone.{conv,bn}, decode_head.conv_seg. */
class TinyDetector extends Module implements ChangeDetector {
  readonly backbone: Backbone;
  readonly head: Head;
  constructor(seed: number) {
    super();
    const rng = new Random(seed);
    this.backbone = this.child("backbone", new Backbone(rng));
    this.head = this.child("decode_head", new Head(rng));
  }
  forward(a: Tensor, b: Tensor): Tensor {
    const bb = this.backbone;
    return this.head.convSeg.forward(bb.bn.forward(bb.conv.forward(sub(a, b))));
  }
}

const tiny = (recipe: Partial<ModelEntry["recipe"]> = {}): ModelEntry => ({
  name: "tiny_opencd",
  title: "test detector",
  create: (seed) => new TinyDetector(seed ?? 0),
  outputs: 2,
  normalize: IMAGENET_NORM,
  recipe: {
    optimizer: "adamw",
    lr: 1e-3,
    weightDecay: 0.01,
    betas: [0.9, 0.999],
    lambda: 1e-4,
    ...recipe,
  },
  paper: { params: 0, flops: 0 },
  sizeDivisor: 1,
});

/** Register `entry` for the duration of `fn` (the trainer looks models up by name). */
async function withEntry<T>(entry: ModelEntry, fn: () => Promise<T>): Promise<T> {
  MODELS[entry.name] = entry;
  try {
    return await fn();
  } finally {
    delete MODELS[entry.name];
  }
}

const cfg = (out: string, extra: Record<string, unknown> = {}) =>
  TrainConfigSchema.parse({
    model: "tiny_opencd",
    data,
    out,
    iters: 4,
    batch: 2,
    size: 16,
    valEvery: 2,
    logEvery: 1,
    ...extra,
  });

/** A backbone file with mmseg's bare keys (and the values it holds). */
async function backboneFile(path: string, prefix = "", extra: Record<string, Tensor> = {}) {
  const vals = {
    "conv.weight": Float32Array.from({ length: 4 * 3 * 9 }, (_, i) => Math.sin(i) * 0.1),
    "conv.bias": Float32Array.from([0.1, -0.2, 0.3, -0.4]),
    "bn.weight": Float32Array.from([1.5, 0.5, 1, 2]),
    "bn.bias": Float32Array.from([0, 0.1, 0.2, 0.3]),
    "bn.running_mean": Float32Array.from([0.01, 0.02, 0.03, 0.04]),
    "bn.running_var": Float32Array.from([1, 2, 3, 4]),
  };
  const shapes: Record<string, number[]> = { "conv.weight": [4, 3, 3, 3] };
  const ts: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(vals)) ts[prefix + k] = tensor(v, shapes[k] ?? [v.length]);
  await saveTensors(path, { ...ts, ...extra });
  for (const t of Object.values(ts)) t.dispose();
  return vals;
}

Deno.test("loadPretrained: bare and backbone.-prefixed keys land in backbone.*", async () => {
  for (const prefix of ["", "backbone."]) {
    const file = join(root, `bb${prefix ? "_prefixed" : ""}.safetensors`);
    const vals = await backboneFile(file, prefix);
    const m = new TinyDetector(1);
    const headBefore = await m.head.convSeg.weight.read();
    assert.equal(loadPretrained(m, file), 6);
    const sd = m.stateDict();
    for (const [k, v] of Object.entries(vals)) {
      assert.deepEqual(Array.from(await sd.get(`backbone.${k}`)!.read()), Array.from(v), k);
    }
    assert.deepEqual(await m.head.convSeg.weight.read(), headBefore, "decode_head untouched");
    m.dispose();
  }
});

Deno.test("loadPretrained names every bad key and writes nothing; skip leaves keys out", async () => {
  const file = join(root, "bad.safetensors");
  const extra = {
    "layer4.0.conv1.weight": tensor([1, 2], [2]),
    "fc.bias": tensor([1], [1]),
  };
  await backboneFile(file, "", extra);
  // Make one shape wrong and drop one tensor by rewriting the file from its entries.
  const entries = readSafetensors(file);
  const ts: Record<string, Tensor> = {};
  for (const [k, e] of entries) {
    if (k === "bn.running_var") continue;
    ts[k] = k === "conv.bias" ? tensor([1, 2, 3], [3]) : tensor(Float32Array.from(e.data), e.shape);
  }
  await saveTensors(file, ts);
  const m = new TinyDetector(2);
  const before = await m.backbone.conv.weight.read();
  let msg = "";
  try {
    loadPretrained(m, file);
  } catch (e) {
    msg = (e as Error).message;
  }
  for (
    const part of [
      "conv.bias: file [3], model [4]",
      "layer4.0.conv1.weight",
      "fc.bias",
      "backbone.bn.running_var",
      "--pretrained-skip",
    ]
  ) {
    assert.ok(msg.includes(part), `${part} in: ${msg}`);
  }
  assert.deepEqual(await m.backbone.conv.weight.read(), before, "nothing written on error");
  // Skipping the extras still fails on the remaining problems only.
  try {
    loadPretrained(m, file, { skip: ["layer4", "fc"] });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.ok(!msg.includes("layer4.0.conv1.weight") && msg.includes("conv.bias"), msg);
  m.dispose();
  for (const t of [...Object.values(ts), ...Object.values(extra)]) t.dispose();
});

Deno.test("train --pretrained: loaded before step 0; a bad file or a model without backbone writes nothing", async () => {
  const file = join(root, "good.safetensors");
  const vals = await backboneFile(file);
  // A tiny LR keeps the weights at the file's values to ~1e-9 after two steps.
  const res = await withEntry(
    tiny({ lr: 1e-9 }),
    () =>
      train(cfg(join(root, "pre"), { iters: 2, pretrained: file }), { dataset: ds, quiet: true }),
  );
  const saved = readSafetensors(join(res.runDir, "last.safetensors"));
  for (const k of ["conv.weight", "conv.bias", "bn.weight"] as const) {
    const got = Array.from(saved.get(`backbone.${k}`)!.data);
    got.forEach((x, i) => assert.ok(Math.abs(x - vals[k][i]) < 1e-6, `${k}[${i}] ${x}`));
  }
  const out = join(root, "nobackbone");
  await assert.rejects(
    () =>
      train(TrainConfigSchema.parse({ ...cfg(out), model: "fc_ef", pretrained: file }), {
        dataset: ds,
        quiet: true,
      }),
    /no backbone\.\* parameters/,
  );
  assert.ok(!existsSync(out), "no run folder on error");
  const bad = join(root, "bad2.safetensors");
  await backboneFile(bad, "", { "stem.0.weight": tensor([1], [1]) });
  const out2 = join(root, "badpre");
  await withEntry(tiny(), () =>
    assert.rejects(
      () => train(cfg(out2, { pretrained: bad }), { dataset: ds, quiet: true }),
      /stem\.0\.weight/,
    ));
  assert.ok(!existsSync(out2), "no run folder on error");
});

const CHANGER_LIKE = {
  paramwise: {
    customKeys: { pos_block: { decayMult: 0 }, norm: { decayMult: 0 }, head: { lrMult: 10 } },
  },
  loss: { ohem: { thresh: 0.7, minKept: 100 } },
  augment: { rotateProb: 0.5, rotateDegrees: 20, rotFlipProb: 0.5, swapProb: 0.5 },
};

Deno.test("the trainer builds the recipe's groups, OHEM loss and augmentation; resume stays exact", async () => {
  const entry = tiny(CHANGER_LIKE);
  const m = entry.create(0);
  assert.deepEqual(recipeMultipliers(m, entry), [
    { lrMult: 1, decayMult: 1, key: null }, // backbone.conv.weight
    { lrMult: 1, decayMult: 1, key: null }, // backbone.conv.bias
    { lrMult: 1, decayMult: 1, key: null }, // backbone.bn.weight ("bn" is no custom key)
    { lrMult: 1, decayMult: 1, key: null },
    { lrMult: 10, decayMult: 1, key: "head" },
    { lrMult: 10, decayMult: 1, key: "head" },
  ]);
  m.dispose();
  const opts = augmentOptions(entry, cfg("x"));
  assert.equal(opts.rotFlipProb, 0.5);
  assert.equal(augmentOptions(entry, cfg("x", { augment: false })).swapProb, undefined);
  const losses = (dir: string) =>
    Deno.readTextFileSync(join(dir, "log.jsonl")).trim().split("\n").map((l) => JSON.parse(l))
      .filter((r) => r.type === "train").map((r) => r.loss);
  await withEntry(entry, async () => {
    await train(cfg(join(root, "full")), { dataset: ds, quiet: true });
    await train(cfg(join(root, "cut")), { dataset: ds, quiet: true, stopAt: 2 });
    await train(cfg(join(root, "cut"), { resume: join(root, "cut") }), {
      dataset: ds,
      quiet: true,
    });
  });
  const full = losses(join(root, "full")), cut = losses(join(root, "cut"));
  assert.equal(full.length, 4);
  assert.ok(full.every((l) => Number.isFinite(l) && l > 0), `${full}`);
  assert.deepEqual(cut, full, "resumed run follows the uninterrupted one exactly");
  // OHEM's loss is Σ kept CE / all pixels: with thresh 0.5 the pixels the untrained model
  // already gets right drop out, so the same first step's loss is below the plain CE.
  const first = async (name: string, loss: ModelEntry["recipe"]["loss"]) => {
    const dir = join(root, name);
    await withEntry(
      tiny({ ...CHANGER_LIKE, loss }),
      () => train(cfg(dir, { iters: 1, valEvery: 1 }), { dataset: ds, quiet: true }),
    );
    return losses(dir)[0];
  };
  const ohem = await first("ohem05", { ohem: { thresh: 0.5, minKept: 1 } });
  const plain = await first("plain", undefined);
  assert.ok(ohem < plain - 1e-3, `OHEM ${ohem} vs CE ${plain}`);
});
