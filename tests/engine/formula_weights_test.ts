// Formula weights (engine/formula_weights.ts) against the Python generator: every manifest's
// check values bit for bit, and the sha256 of a whole model's generated state_dict (per key in
// order: the UTF-8 key, then the tensor's little-endian bytes) as manifest-formula.json records.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import {
  fnv1a,
  formulaEntries,
  parseFormulaManifest,
  readFormulaWeights,
} from "../../engine/formula_weights.ts";

const DIR = new URL("../../../shared/fixtures/formula/", import.meta.url).pathname;
const present = existsSync(DIR);
if (!present) {
  console.log(`skipping formula-weight tests: ${DIR} is absent (it ships beside the repo)`);
}

function manifestText(model: string): string {
  return readFileSync(`${DIR}${model}_formula.json`, "utf8");
}

Deno.test("fnv1a: the published test vectors", () => {
  assert.equal(fnv1a("a"), 0xe40c292c);
  assert.equal(fnv1a("foobar"), 0xbf9cf968);
});

Deno.test({
  name: "formula weights: every manifest's check values, bit for bit",
  ignore: !present,
  fn() {
    const files = readdirSync(DIR).filter((f) => f.endsWith("_formula.json"));
    assert.equal(files.length, 11, "eleven Table II manifests");
    for (const f of files) {
      const m = parseFormulaManifest(readFileSync(DIR + f, "utf8"), f);
      const checks = Object.keys(m.check_values ?? {});
      assert.equal(checks.length, 3, `${f}: three check keys`);
      // Only the checked keys (and what they alias) are generated: formulaEntries checks them.
      const rules = m.rules.filter((r) => checks.includes(r.key));
      formulaEntries({ ...m, rules }, f);
    }
  },
});

Deno.test({
  name: "formula weights: whole state_dicts hash as the Python generator's (3 models)",
  ignore: !present,
  fn() {
    const runs = JSON.parse(readFileSync(`${DIR}manifest-formula.json`, "utf8")).models;
    for (const model of ["lightcdnet_s", "hanet", "changer_ex_r18"]) {
      const m = parseFormulaManifest(manifestText(model), model);
      const entries = formulaEntries(m);
      const h = createHash("sha256");
      for (const [key, e] of entries) {
        h.update(new TextEncoder().encode(key));
        const bytes = e.dtype === "I64"
          ? new Uint8Array(new BigInt64Array(e.data.length).buffer) // zeros
          : new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength);
        h.update(bytes);
      }
      assert.equal(h.digest("hex"), runs[model].weights_sha256, model);
      // Parameters are the fan / bias / norm keys (an alias is one tensor, counted once).
      const learnable = new Set(["fan", "bias", "norm_weight", "norm_bias"]);
      const params = m.rules.filter((r) => learnable.has(r.rule))
        .reduce((n, r) => n + r.shape.reduce((a, b) => a * b, 1), 0);
      assert.equal(params, m.params, `${model}: parameter count`);
    }
  },
});

Deno.test("formula weights: bad manifests are refused, naming the file", async () => {
  assert.throws(() => parseFormulaManifest("{", "x.json"), /x\.json: not JSON/);
  assert.throws(() => parseFormulaManifest('{"a":1}', "y.json"), /y\.json: not a formula-weights/);
  const bad = JSON.stringify({
    model: "m",
    rules: [{ key: "w", shape: [2, 2], dtype: "float32", rule: "alias", of: "nope" }],
  });
  assert.throws(() => parseFormulaManifest(bad, "z.json"), /z\.json: "w" aliases "nope"/);
  const wrong = {
    model: "m",
    rules: [{ key: "w", shape: [3], dtype: "float32", rule: "bias" as const }],
    check_values: { w: { first_bits: ["00000000"], last_bits: [] } },
  };
  assert.throws(() => formulaEntries(wrong, "c.json"), /c\.json: "w" regenerates as/);
  await assert.rejects(
    readFormulaWeights("/nonexistent/q.json"),
    /q\.json: formula manifest not found/,
  );
});
