// bench/step_traffic.ts: the dispatch tap sees every launch of a dry run with its bound bytes.

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { add } from "../../engine/ops/elementwise.ts";
import { concat } from "../../engine/ops/layout.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { H100_PROFILE, withProfile } from "../../kernels/device_profile.ts";
import { isConvKernel, stepTraffic, traffic } from "../../bench/step_traffic.ts";
import { randArray } from "../util.ts";

await initDevice();

Deno.test("step traffic: one add of 5×7 binds its two operands and its result", () => {
  const a = tensor(randArray(35, 1), [5, 7]).keep(), b = tensor(randArray(35, 2), [5, 7]).keep();
  const t = traffic(() => scope(() => void add(a, b)));
  assert.equal([...t.dispatches.values()].reduce((x, y) => x + y, 0), 1);
  assert.deepEqual([...t.bytes.values()], [3 * 35 * 4]);
  for (const x of [a, b]) {
    x.kept = false;
    x.dispose();
  }
});

Deno.test("step traffic: a concatenation's pieces count what they move, not the output they bind", () => {
  const a = tensor(randArray(2 * 3 * 5, 3), [2, 3, 5]).keep();
  const b = tensor(randArray(2 * 4 * 5, 4), [2, 4, 5]).keep();
  const t = traffic(() => scope(() => void concat([a, b], 1)));
  assert.equal(t.dispatches.get("concat"), 2);
  assert.equal(t.bytes.get("concat"), 2 * (30 + 40) * 4); // each element read once, written once
  for (const x of [a, b]) {
    x.kept = false;
    x.dispose();
  }
});

Deno.test("step traffic: a dry FC-EF step at 2 × 32² has its convs, norms and AdamW, fused convs move less", () => {
  const base = withProfile(H100_PROFILE, () => stepTraffic("fc_ef", 2, 32));
  const kernels = [...base.bytes.keys()];
  assert.ok(kernels.some(isConvKernel), kernels.join(", "));
  assert.ok(kernels.some((k) => k.startsWith("norm_")), kernels.join(", "));
  assert.ok(kernels.some((k) => k.startsWith("adamw")), kernels.join(", "));
  const fused = withProfile(
    { ...H100_PROFILE, fusedWino4MaxChannels: 64 },
    () => stepTraffic("fc_ef", 2, 32),
  );
  assert.ok(fused.bytes.has("conv2d_winograd4_fused"), "fused forward routed");
  assert.ok(fused.bytes.has("conv2d_wgrad_wino4_fused"), "fused weight gradient routed");
  const total = (t: typeof base) => [...t.bytes.values()].reduce((x, y) => x + y, 0);
  assert.ok(total(fused) < total(base), `${total(fused)} ≥ ${total(base)}`);
});
