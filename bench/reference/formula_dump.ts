// Writes the state_dict a formula manifest defines (engine/formula_weights.ts) to a safetensors
// file, so the PyTorch mirrors of bench/reference/table2 can be checked against the upstream
// outputs on a CPU without regenerating 40 M xorshift values in Python:
//   deno run -A bench/reference/formula_dump.ts MANIFEST OUT.safetensors

import { readFormulaWeights } from "../../engine/formula_weights.ts";
import { type WriteEntry, writeSafetensors } from "../../engine/safetensors_format.ts";

const [manifest, out] = Deno.args;
if (!manifest || !out) {
  console.error("usage: formula_dump.ts MANIFEST OUT.safetensors");
  Deno.exit(2);
}
const entries = await readFormulaWeights(manifest);
const write = new Map<string, WriteEntry>();
for (const [key, e] of entries) {
  write.set(key, {
    dtype: e.dtype === "I64" ? "I64" : "F32",
    shape: e.shape,
    data: e.data as ArrayLike<number>,
  });
}
writeSafetensors(out, write, { source: manifest });
console.log(`${out}: ${write.size} tensors from ${manifest}`);
