// The GPU timestamp helpers on the real adapter (the software one has timestamp-query): the
// benches' two-mark clock reads both marks back, and the per-kernel profile counts every
// dispatch under its label. Only orderings and counts are asserted, never durations.

import assert from "node:assert/strict";
import { hasFeature, initDevice } from "../../engine/device.ts";
import { GpuClock } from "../../engine/gpu_clock.ts";
import { startProfile, stopProfile } from "../../engine/kernel_profile.ts";
import { map } from "../../engine/ops/elementwise.ts";
import { matmul } from "../../engine/ops/matmul.ts";
import { flush, sync } from "../../engine/recorder.ts";
import { randTensor } from "../util.ts";

await initDevice();
assert.ok(hasFeature("timestamp-query"), "this adapter lacks timestamp-query; nothing to test");

Deno.test("GpuClock: the marks around recorded work read back in order, twice over", async () => {
  const clock = new GpuClock();
  const x = randTensor([97, 131], 1);
  for (let round = 0; round < 2; round++) {
    clock.mark(0);
    let y = x;
    for (let i = 0; i < 20; i++) y = map("clock_probe", "a * 1.0001 + 0.5", [y]);
    clock.mark(1);
    const ms = await clock.elapsedMs();
    assert.ok(Number.isFinite(ms) && ms > 0, `round ${round}: ${ms} ms between the marks`);
  }
  clock.mark(0);
  clock.mark(1);
  clock.resolve();
  await sync();
  const ns = await clock.elapsedNs();
  assert.ok(Number.isFinite(ns) && ns >= 0, `${ns} ns between two empty passes`);
});

Deno.test("kernel profile: each dispatch counted under its label, across query-set chunks", async () => {
  const x = randTensor([33, 7], 2);
  startProfile();
  // 2100 dispatches take 4200 timestamps: two query sets of 4096.
  for (let i = 0; i < 2100; i++) map("profile_a", "a + 1.0", [x]).dispose();
  for (let i = 0; i < 3; i++) map("profile_b", "a * 2.0", [x]).dispose();
  flush();
  const times = await stopProfile();
  const a = times.filter((t) => t.label.startsWith("profile_a"));
  const b = times.filter((t) => t.label.startsWith("profile_b"));
  assert.deepStrictEqual([a.length, b.length], [1, 1], times.map((t) => t.label).join(", "));
  assert.equal(a[0].calls, 2100);
  assert.equal(b[0].calls, 3);
  for (const t of times) assert.ok(Number.isFinite(t.ms) && t.ms >= 0, `${t.label}: ${t.ms}`);
});

Deno.test("kernel profile: a matmul's label names its shape, so products can be told apart", async () => {
  const a = randTensor([37, 19], 3), b = randTensor([19, 23], 4);
  startProfile();
  matmul(a, b).dispose();
  flush();
  const labels = (await stopProfile()).map((t) => t.label);
  assert.ok(labels.some((l) => /^matmul \[[0-9x]+\] 37x23x19 batch=1 /.test(l)), labels.join(", "));
});
