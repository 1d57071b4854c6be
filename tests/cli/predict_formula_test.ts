// `deno task predict --weights-formula MANIFEST` for every registered Table II model with a
// formula manifest (../shared/fixtures/formula): the probabilities it writes for the first
// reference pair equal the model's own probability of the upstream logits (softmax channel 1
// of 2-channel logits, sigmoid of 1-channel ones) within 1e-4. Bad manifests and flags are
// refused, naming the file or the flag.

import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { PREDICT_HELP, PredictFlags, runPredict } from "../../cli/predict.ts";
import { initDevice } from "../../engine/device.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { MODELS } from "../../models/registry.ts";
import { FORMULA, formulaPresent } from "../models/formula_parity.ts";
import { FIX, maxAbsDiff } from "../models/opencd_parity.ts";
import { tempDir } from "../temp.ts";

/** The change probability per pixel of [C, H, W] logits, C = 1 (sigmoid) or 2 (softmax). */
function changeProbability(logits: ArrayLike<number>, channels: number): Float64Array {
  const n = logits.length / channels, p = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const z = channels === 2 ? logits[n + i] - logits[i] : logits[i];
    p[i] = 1 / (1 + Math.exp(-z));
  }
  return p;
}

function predictFlags(tmp: string, pairs: string[], extra: string[]) {
  const data = join(tmp, "data");
  for (const d of ["A", "B", "label"]) {
    mkdirSync(join(data, d), { recursive: true });
    for (const p of pairs) copyFileSync(`${FIX}levir-cd/${d}/${p}.png`, join(data, d, `${p}.png`));
  }
  return parseFlagsOrThrow(
    ["--quiet", `--data=${data}`, `--out=${join(tmp, "masks")}`, ...extra],
    PredictFlags,
    { help: PREDICT_HELP },
  );
}

const manifests = existsSync(FORMULA)
  ? readdirSync(FORMULA).filter((f) => f.endsWith("_formula.json")).map((f) => f.slice(0, -13))
  : [];
for (const name of manifests.filter((m) => MODELS[m]).sort()) {
  Deno.test(`predict --weights-formula: ${name} writes the upstream probabilities`, async () => {
    await initDevice();
    const ref = readSafetensors(`${FORMULA}${name}_formula.reference.safetensors`);
    const keys = [...ref.keys()].filter((k) => k.startsWith("logits.")).sort();
    assert.ok(keys.length > 0, `${name}: the reference has no logits`);
    const pair = keys[0].slice(7);
    const tmp = await tempDir({ prefix: `predict_formula_${name}_` });
    try {
      const probs = join(tmp, "probs.safetensors");
      const flags = predictFlags(tmp, [pair], [
        `--weights-formula=${FORMULA}${name}_formula.json`,
        `--probs=${probs}`,
      ]);
      const summary = await runPredict(flags);
      assert.equal(summary.model, name, "the model comes from the manifest");
      const want = changeProbability(ref.get(`logits.${pair}`)!.data, MODELS[name].outputs);
      const d = maxAbsDiff(
        `${name} prob.${pair}`,
        readSafetensors(probs).get(`prob.${pair}`)!.data,
        want,
      );
      console.log(`${name} ${pair}: max |Δ prob| ${d.toExponential(2)}`);
      assert.ok(d <= 1e-4, `${name} ${pair}: max |Δ prob| ${d}`);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  });
}

Deno.test({
  name: "predict --weights-formula: a wrong model, a missing manifest, both flags are refused",
  ignore: !formulaPresent("changeformer_mit_b1"),
  fn: async () => {
    const tmp = await tempDir({ prefix: "predict_formula_bad_" });
    try {
      const pair = "test_102_0512_0000";
      const manifest = `${FORMULA}changeformer_mit_b1_formula.json`;
      const other = predictFlags(tmp, [pair], [
        `--weights-formula=${manifest}`,
        "--model=changeformer_mit_b0",
      ]);
      await assert.rejects(
        runPredict(other),
        /defines model "changeformer_mit_b1", not "changeformer_mit_b0"/,
      );
      const missing = predictFlags(tmp, [pair], [`--weights-formula=${tmp}/none.json`]);
      await assert.rejects(runPredict(missing), /none\.json: formula manifest not found/);
      assert.throws(
        () =>
          parseFlagsOrThrow(
            ["--data=x", "--out=y", "--weights=a.safetensors", `--weights-formula=${manifest}`],
            PredictFlags,
            { help: PREDICT_HELP },
          ),
        /--weights-formula/,
      );
      assert.ok(!existsSync(join(tmp, "masks")), "nothing written");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
