import assert from "node:assert/strict";
import { parseRows, stepTable } from "../../bench/step_table.ts";

Deno.test("step_table: one row per model with ours ÷ eager and ÷ compile; stray lines skipped", () => {
  const text = [
    "gpu: NVIDIA H100 80GB HBM3",
    '{"model": "fc_ef", "impl": "pytorch", "train_ms": 40, "infer_ms": 8, "peak_gb": 7.37, "device": "H100"}',
    '{"model":"fc_ef","impl":"cd-engine","train_ms":26,"infer_ms":8.2,"peak_pool_gb":3.91,"device":"H100"}',
    '{"model": "fc_ef", "impl": "pytorch-compile", "train_ms": 17.4, "infer_ms": 4.05, "peak_gb": 3.38}',
    '{"model":"hanet","impl":"cd-engine","train_ms":500,"infer_ms":97.5,"peak_pool_gb":38.7}',
    "{ not json",
  ].join("\n");
  const rows = parseRows(text);
  assert.equal(rows.length, 4);
  const table = stepTable(rows);
  assert.match(table, /Device: H100\./);
  assert.match(
    table,
    /\| fc_ef \| 26\.0 \/ 40\.0 \/ 17\.4 \| 0\.65 \| 1\.49 \| 8\.2 \/ 8\.0 \/ 4\.0 \| 3\.91 \/ 7\.37 \/ 3\.38 \|/,
  );
  assert.match(
    table,
    /\| hanet \| 500\.0 \/ – \/ – \| – \| – \| 97\.5 \/ – \/ – \| 38\.70 \/ – \/ – \|/,
  );
});
