// The MAC counter behind `deno task models`: a dry count (no kernel recorded) must give the same
// figure as a real run, and attention's two products are counted.

import assert from "node:assert/strict";
import { noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { attention } from "../../engine/ops/attention.ts";
import { countMacs } from "../../engine/profiler.ts";
import { stats } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { zeros } from "../../engine/tensor.ts";
import { MODELS } from "../../models/registry.ts";

Deno.test("a dry MAC count records nothing and equals the count of a real forward", async () => {
  await initDevice();
  const model = MODELS.fc_siam_diff.create(0).eval();
  const count = (dry: boolean) =>
    scope(() =>
      noGrad(() =>
        countMacs(() => model.forward(zeros([1, 3, 48, 40]), zeros([1, 3, 48, 40])), { dry })
      )
    );
  const real = count(false);
  const before = stats.dispatches;
  const dry = count(true);
  assert.equal(stats.dispatches, before, "a dry count recorded dispatches");
  assert.equal(dry, real);
  assert.ok(real > 0);
  model.dispose();
});

Deno.test("attention counts q·kᵀ and p·v", async () => {
  await initDevice();
  const [b, h, lq, lk, d, dv] = [2, 3, 17, 5, 8, 4];
  const n = scope(() =>
    countMacs(() => {
      attention(zeros([b, h, lq, d]), zeros([b, h, lk, d]), zeros([b, h, lk, dv]));
    }, { dry: true })
  );
  assert.equal(n, b * h * lq * lk * (d + dv));
});
