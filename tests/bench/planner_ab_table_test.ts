import assert from "node:assert/strict";
import { abTable, variantOf } from "../../bench/planner_ab_table.ts";

Deno.test("planner_ab_table: variants named by their flags, each beside the base as a ratio", () => {
  assert.equal(variantOf({ model: "m", train_ms: 1, infer_ms: 1 }), "base");
  assert.equal(
    variantOf({ model: "m", train_ms: 1, infer_ms: 1, matmul_split_below: 1, fused_wino4_max: 64 }),
    "split below 1 fused ≤ 64",
  );
  assert.equal(
    variantOf({ model: "m", train_ms: 1, infer_ms: 1, shuffle_min_channels: 32 }),
    "shuffle ≥ 32",
  );
  assert.equal(
    variantOf({ model: "m", train_ms: 1, infer_ms: 1, tap_expand_max: 32 }),
    "tap-expand ≤ 32",
  );
  assert.equal(
    variantOf({ model: "m", train_ms: 1, infer_ms: 1, matmul_small_tiles: true }),
    "small tiles",
  );
  const text = [
    "== variant: base",
    '{"model":"fc_ef","train_ms":20,"infer_ms":8,"device":"H100"}',
    '{"model":"fc_ef","train_ms":15,"infer_ms":6,"fused_wino4_max":64,"device":"H100"}',
    "{ not a row",
  ].join("\n");
  const table = abTable(text);
  assert.match(table, /^Device: H100\./);
  assert.match(table, /\| fc_ef \| 20\.0 \| 15\.0 \(0\.75\) \| 8\.0 \| 6\.0 \(0\.75\) \|/);
});
