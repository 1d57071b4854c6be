// The JL1-CD method's rules: O-P routes by M_O's predicted CAR (not the label), MTKD picks each
// sample's teacher by its ground-truth CAR, teachers get no gradient and do not change, λ = 0 is
// plain fine-tuning, and the demo pipeline writes every report file.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { THREE_TEACHERS, TWO_TEACHERS } from "../../data/partition.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { Module } from "../../engine/nn/module.ts";
import { fill } from "../../engine/ops/elementwise.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, zeros } from "../../engine/tensor.ts";
import type { ChangeDetector } from "../../models/model.ts";
import { modelEntry } from "../../models/registry.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { teacherLogits } from "../../train/distill.ts";
import { runExperiment } from "../../train/experiment.ts";
import { routeByPredictedCar } from "../../train/op.ts";
import { train } from "../../train/trainer.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-method-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 40, size: 16, seed: 9, val: 6, test: 6 });
const ds = await checkDataset(data);
const cfg = (out: string, extra: Record<string, unknown> = {}) =>
  TrainConfigSchema.parse({
    model: "fc_ef",
    data,
    out,
    iters: 3,
    batch: 4,
    size: 16,
    valEvery: 3,
    logEvery: 1,
    ...extra,
  });

Deno.test("O-P routes each image by the CAR M_O predicts, not by its label", () => {
  const images = [
    { name: "a", car: 0.01, predictedCar: 0.5 },
    { name: "b", car: 0.5, predictedCar: 0.01 },
    { name: "c", car: 0.1, predictedCar: 0.1 },
    { name: "d", car: 0.05, predictedCar: 0.2 },
  ];
  const r = routeByPredictedCar(images, THREE_TEACHERS);
  assert.deepEqual(r.map((x) => x.routed), [2, 0, 1, 1]);
  assert.deepEqual(r.map((x) => x.truth), [0, 2, 1, 0]);
  assert.deepEqual(routeByPredictedCar(images, TWO_TEACHERS).map((x) => x.routed), [1, 0, 0, 1]);
});

/** A stand-in teacher whose logits are the constant k (a real module on the real engine). */
class ConstantTeacher extends Module implements ChangeDetector {
  constructor(readonly k: number) {
    super();
  }
  forward(a: Tensor): Tensor {
    return fill([a.shape[0], 1, a.shape[2], a.shape[3]], this.k);
  }
}

Deno.test("MTKD gives each sample the logits of its own partition's teacher", async () => {
  const teachers = [new ConstantTeacher(10), new ConstantTeacher(20), new ConstantTeacher(30)];
  const owner = [2, 0, 0, 1, 2];
  const out = scope(() =>
    teacherLogits(teachers, (i) => owner[i], zeros([5, 3, 4, 4]), zeros([5, 3, 4, 4]), 5)
  );
  const v = await out.read();
  out.dispose();
  owner.forEach((o, i) => {
    for (let p = 0; p < 16; p++) assert.equal(v[i * 16 + p], [10, 20, 30][o]);
  });
});

Deno.test("teachers stay unchanged and gradient-free; λ = 0 equals plain fine-tuning", async () => {
  const teacher = modelEntry("fc_ef").create(7).eval();
  const before = await Promise.all(teacher.parameters().map((p) => p.read()));
  const runs = join(root, "kd");
  const distilled = await train(cfg(join(runs, "lambda0")), {
    dataset: ds,
    quiet: true,
    distill: { lambda: 0, teacher: (a, b) => teacher.forward(a, b) },
  });
  const plain = await train(cfg(join(runs, "plain")), { dataset: ds, quiet: true });
  assert.deepEqual(distilled.losses.map((l) => l.loss), plain.losses.map((l) => l.loss));
  const kd = await train(cfg(join(runs, "lambda1")), {
    dataset: ds,
    quiet: true,
    distill: { lambda: 1, teacher: (a, b) => teacher.forward(a, b) },
  });
  assert.notDeepEqual(kd.losses.map((l) => l.loss), plain.losses.map((l) => l.loss));
  const after = await Promise.all(teacher.parameters().map((p) => p.read()));
  after.forEach((a, i) => assert.deepEqual(Array.from(a), Array.from(before[i])));
  for (const p of teacher.parameters()) assert.equal(p.grad, null);
  // The teacher's output carries no tape either.
  const y = scope(() =>
    noGrad(() => teacher.forward(zeros([1, 3, 16, 16]), zeros([1, 3, 16, 16])))
  );
  assert.equal(y.requiresGrad, false);
  y.dispose();
  teacher.dispose();
});

Deno.test("the demo pipeline writes every report file", async () => {
  const dir = join(root, "experiment");
  const logged: string[] = [];
  await runExperiment(
    cfg(dir),
    dir,
    { scheme: TWO_TEACHERS, lambdas: [1e-4], studentIters: 2, quiet: true },
    (l) => logged.push(l),
  );
  for (
    const f of [
      "report.html",
      "results.json",
      "quintiles.svg",
      "car_histogram.svg",
      "partition.json",
      "original/best.safetensors",
      "teacher_small/best.safetensors",
      "teacher_large/best.safetensors",
      "student_0.0001/best.safetensors",
    ]
  ) assert.ok(existsSync(join(dir, f)), f);
  const results = JSON.parse(Deno.readTextFileSync(join(dir, "results.json")));
  // Issue 21: the oracle-routed O-P (upper bound) and the λ = 0 control beside MTKD.
  assert.deepEqual(Object.keys(results.strategies), [
    "Original",
    "O-P",
    "O-P oracle routing",
    "MTKD",
    "λ = 0 control",
  ]);
  assert.ok(existsSync(join(dir, "student_0/best.safetensors")), "the control's own folder");
  assert.equal(results.cross.columns.join(), "small,large,all");
  const html = Deno.readTextFileSync(join(dir, "report.html"));
  assert.match(html, /<td>λ = 0 control<\/td>/);
  assert.match(html, /Table III/);
  assert.match(html, /<svg/);
  assert.match(html, /data:image\/png;base64,/);
  // Issue 18 item 14: the small-budget banner, Fig. 5 in the page, an O-P overlay column, and the
  // closing console line naming results.json.
  assert.match(html, /<p class="banner">Too small to compare strategies: each member trained only/);
  assert.equal(results.warnings.length, 1);
  assert.match(html, /<h2>CAR of every pair \(Fig\. 5[^<]*<\/h2><svg/);
  assert.match(html, /<th>label<\/th><th>Original<\/th><th>O-P<\/th><th>MTKD<\/th>/);
  const row = /<tr><td>[^<]*<br>CAR[\s\S]*?<\/tr>/.exec(html)![0];
  assert.equal(row.match(/<img /g)?.length, 6, "A, B, label, Original, O-P, MTKD");
  assert.match(logged.at(-2)!, /^warning: Too small to compare strategies/);
  assert.equal(
    logged.at(-1),
    `report: ${join(dir, "report.html")}; results: ${join(dir, "results.json")}`,
  );
});
