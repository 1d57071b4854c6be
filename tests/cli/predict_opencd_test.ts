// `deno task predict` with the Open-CD transformer detectors' fixture weights: the change
// probabilities it writes must equal the softmax of the upstream code's logits
// (../shared/fixtures/weights/NAME_seed0.reference.safetensors) within 1e-4. The data folder
// holds the reference pairs only (copied to a temp dir), so the test stays small.

import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseFlagsOrThrow } from "../../cli/args.ts";
import { PREDICT_HELP, PredictFlags, runPredict } from "../../cli/predict.ts";
import { initDevice } from "../../engine/device.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { FIX, fixturePresent, maxAbsDiff } from "../models/opencd_parity.ts";
import { tempDir } from "../temp.ts";

/** softmax(logits)[1] per pixel of a [2, H, W] array. */
function changeProbability(logits: ArrayLike<number>): Float64Array {
  const n = logits.length / 2, p = new Float64Array(n);
  for (let i = 0; i < n; i++) p[i] = 1 / (1 + Math.exp(logits[i] - logits[n + i]));
  return p;
}

for (const name of ["bit_r18", "changeformer_mit_b0", "changer_ex_mit_b0"]) {
  const file = `${name}_seed0`;
  Deno.test({
    name: `predict with ${name}'s fixture weights writes the upstream probabilities`,
    ignore: !fixturePresent(file),
    fn: async () => {
      await initDevice();
      const ref = readSafetensors(`${FIX}weights/${file}.reference.safetensors`);
      const pairs = [...ref.keys()].filter((k) => k.startsWith("logits.")).map((k) => k.slice(7));
      const tmp = await tempDir({ prefix: `predict_${name}_` });
      try {
        const data = join(tmp, "data");
        for (const d of ["A", "B", "label"]) {
          mkdirSync(join(data, d), { recursive: true });
          for (const p of pairs) {
            copyFileSync(`${FIX}levir-cd/${d}/${p}.png`, join(data, d, `${p}.png`));
          }
        }
        const probs = join(tmp, "probs.safetensors");
        const flags = parseFlagsOrThrow(
          [
            "--quiet",
            `--model=${name}`,
            `--weights=${FIX}weights/${file}.safetensors`,
            `--data=${data}`,
            `--out=${join(tmp, "masks")}`,
            `--probs=${probs}`,
          ],
          PredictFlags,
          { help: PREDICT_HELP },
        );
        const summary = await runPredict(flags);
        assert.equal(summary.images, pairs.length);
        const got = readSafetensors(probs);
        for (const p of pairs) {
          const want = changeProbability(ref.get(`logits.${p}`)!.data);
          const d = maxAbsDiff(`${name} prob.${p}`, got.get(`prob.${p}`)!.data, want);
          console.log(`${name} ${p}: max |Δ prob| ${d.toExponential(2)}`);
          assert.ok(d <= 1e-4, `${name} ${p}: max |Δ prob| ${d}`);
        }
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
  });
}
