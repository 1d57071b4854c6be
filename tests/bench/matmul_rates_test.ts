import assert from "node:assert/strict";
import { parseMatmulRows, rowFlops } from "../../bench/matmul_rates.ts";

Deno.test("matmul_rates: profile rows parsed with their shape and profile; FLOPs count every call", () => {
  const text = [
    "# stanet_base_r18: 1215 dispatches, 58.67 ms GPU in one profiled step",
    "# by kernel:",
    "#      27.153 ms   144×  matmul",
    "# by kernel and grid:",
    "#       3.042 ms     2×  matmul [4x4x36] 256x256x8192 batch=36 R=1 split=1 tile=64x64",
    "#       1.035 ms     6×  norm_grad [32768x1x1]",
    "# changeformer_mit_b1: 1261 dispatches, 73.79 ms GPU in one profiled step",
    "#       2.175 ms     1×  matmul [8x2x17] 256x1024x16384 batch=1 R=8 split=17 tile=128x128",
  ].join("\n");
  const rows = parseMatmulRows(text);
  assert.equal(rows.length, 2);
  assert.deepEqual(
    [rows[0].profile, rows[0].m, rows[0].n, rows[0].k, rows[0].batch, rows[0].calls, rows[0].tile],
    ["stanet_base_r18", 256, 256, 8192, 36, 2, "64x64"],
  );
  assert.equal(rowFlops(rows[0]), 2 * 256 * 256 * 8192 * 36 * 2);
  assert.equal(rows[1].profile, "changeformer_mit_b1");
  assert.equal(rowFlops(rows[1]), 2 * 256 * 1024 * 16384 * 8);
});
