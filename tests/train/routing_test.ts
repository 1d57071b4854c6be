// Issue 21 on the real engine: soft routing averages two teachers' probabilities, MTKD's soft
// targets average their logits, O-P's oracle routing and cross table come from every teacher on
// every image, op --teachers auto scores each K on validation, and distill's λ = 0 control
// trains beside the MTKD student.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { initDevice } from "../../engine/device.ts";
import { Module } from "../../engine/nn/module.ts";
import { fill } from "../../engine/ops/elementwise.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, zeros } from "../../engine/tensor.ts";
import type { ChangeDetector } from "../../models/model.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { runDistill, teacherLogits } from "../../train/distill.ts";
import { loadMember, originalDir, studentDir, teacherDir } from "../../train/members.ts";
import { opOnSplit } from "../../train/op_eval.ts";
import { runOpAuto } from "../../train/op_auto.ts";
import { changeProbability } from "../../train/predict.ts";
import { AveragedDetector } from "../../train/soft_route.ts";
import { evalWindow } from "../../train/config.ts";
import { readManifest } from "../../data/partition.ts";
import { tempDir } from "../temp.ts";

await initDevice();
const root = await tempDir({ prefix: "cd-routing-" });
const data = join(root, "data");
await writeSynthDataset({ out: data, pairs: 40, size: 16, seed: 9, val: 6, test: 6 });
const ds = await checkDataset(data);
const cfg = (out: string, iters = 2) =>
  TrainConfigSchema.parse({
    model: "fc_ef",
    data,
    out,
    iters,
    batch: 4,
    size: 16,
    valEvery: iters,
    logEvery: 1,
  });

/** Logits of the constant k (a real module on the real engine). */
class Constant extends Module implements ChangeDetector {
  constructor(readonly k: number) {
    super();
  }
  forward(a: Tensor): Tensor {
    return fill([a.shape[0], 1, a.shape[2], a.shape[3]], this.k);
  }
}
const logit = (p: number) => Math.log(p / (1 - p));

Deno.test("soft routing: the mean of two teachers' probabilities; soft targets: of their logits", async () => {
  const mean = new AveragedDetector([new Constant(logit(0.9)), new Constant(logit(0.3))]);
  const p = scope(() => changeProbability(mean.forward(zeros([2, 3, 4, 4]), zeros([2, 3, 4, 4]))));
  for (const v of await p.read()) assert.ok(Math.abs(v - 0.6) < 1e-5, String(v));
  p.dispose();
  const teachers = [new Constant(10), new Constant(20)];
  const owners = [0, [0, 1], 1] as const;
  const t = scope(() =>
    teacherLogits(
      teachers,
      (i) => owners[i] as number | [number, number],
      zeros([3, 3, 2, 2]),
      zeros([3, 3, 2, 2]),
      3,
    )
  );
  assert.deepEqual(Array.from(await t.read()), [10, 10, 10, 10, 15, 15, 15, 15, 20, 20, 20, 20]);
  t.dispose();
});

const dir = join(root, "auto");
const logged: string[] = [];
const choice = await runOpAuto(cfg(dir), dir, ds, (l) => logged.push(l), 0, 2);

Deno.test("op --teachers auto: each K's routed ensemble scored on validation, the best chosen", () => {
  assert.deepEqual(choice.candidates.map((c) => c.teachers), [1, 2]);
  const best = Math.max(...choice.candidates.map((c) => c.valMIoU!));
  const chosen = choice.candidates.find((c) => c.teachers === choice.chosen)!;
  assert.equal(chosen.valMIoU, best);
  assert.deepEqual(choice.candidates[0].thresholds, []);
  assert.equal(choice.candidates[1].thresholds.length, 1);
  const [a, b] = choice.candidates[1].pairs;
  assert.ok(Math.abs(a - b) <= 2, `equal counts: ${a} / ${b}`);
  const saved = JSON.parse(Deno.readTextFileSync(join(dir, "auto.json")));
  assert.equal(saved.chosen, choice.chosen);
  // Each K is a complete O-P folder sharing M_O; the chosen report at the top carries the choice.
  assert.equal(
    Deno.realPathSync(originalDir(join(dir, "k2"))),
    Deno.realPathSync(originalDir(dir)),
  );
  const results = JSON.parse(Deno.readTextFileSync(join(dir, "results.json")));
  assert.equal(results.auto.chosen, choice.chosen);
  assert.match(
    Deno.readTextFileSync(join(dir, "report.html")),
    /Teacher count chosen from the data/,
  );
  assert.ok(logged.some((l) => /^chosen: \d teacher/.test(l)), logged.join("\n"));
});

Deno.test("O-P on a split: oracle by ground-truth CAR, soft count, confusion, cross table", async () => {
  const k2 = join(dir, "k2");
  const scheme = await readManifest(join(k2, "partition.json"));
  const mo = loadMember("fc_ef", originalDir(k2));
  const teachers = scheme.names.map((n) => loadMember("fc_ef", teacherDir(k2, n)));
  const opts = evalWindow({ model: "fc_ef", batch: 4, size: 16 });
  try {
    const hard = await opOnSplit(mo, teachers, ds.test, scheme, opts, 0);
    assert.equal(hard.soft, null);
    for (const r of hard.routing) {
      const t = hard.counts.teachers;
      assert.deepEqual(hard.counts.oracle.get(r.name), t[r.truth].get(r.name));
      assert.deepEqual(hard.counts.op.get(r.name), t[r.routed].get(r.name));
    }
    assert.equal(hard.confusion.flat().reduce((s, v) => s + v, 0), ds.test.length);
    // A margin of 1 puts every image within it of the one threshold: all are averaged.
    const soft = await opOnSplit(mo, teachers, ds.test, scheme, opts, 1);
    assert.equal(soft.soft!.images, ds.test.length);
    const results = JSON.parse(Deno.readTextFileSync(join(k2, "results.json")));
    assert.ok("O-P oracle routing" in results.strategies);
    assert.equal(results.routing.oracleMIoU, results.strategies["O-P oracle routing"].mIoU);
    assert.deepEqual(results.cross.rows.map((r: { member: string }) => r.member), [
      "M_O",
      `teacher ${scheme.names[0]}`,
      `teacher ${scheme.names[1]}`,
    ]);
    const imgs = results.cross.rows[0].cells.map((c: { images: number }) => c.images);
    assert.equal(imgs.at(-1), ds.val.length);
    assert.equal(imgs[0] + imgs[1], ds.val.length);
  } finally {
    for (const m of [mo, ...teachers]) m.dispose();
  }
});

Deno.test("distill: soft targets get their own student folder; the λ = 0 control trains beside", async () => {
  const k2 = join(dir, "k2");
  const scheme = await readManifest(join(k2, "partition.json"));
  const r = await runDistill(cfg(k2), ds, scheme, k2, [1e-4], () => {}, true, {
    kdMargin: 0.05,
    control: true,
  });
  assert.equal(r.chosen.runDir, studentDir(k2, 1e-4, 0.05));
  assert.ok(r.chosen.runDir.endsWith("student_0.0001_margin0.05"));
  assert.equal(r.control!.lambda, 0);
  assert.ok(existsSync(join(studentDir(k2, 0), "member.json")));
  assert.equal(r.control!.test.images + r.control!.test.skipped, ds.test.length);
});
