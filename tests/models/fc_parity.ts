// The harness of the original implementations' parity (../shared/fixtures): the authors' TinyCD
// checkpoint and seeded FC-Siam weights run on the fixture's LEVIR-CD pairs against the outputs
// the original PyTorch code computed (parity_test.ts; winograd6_parity_test.ts under F(6×6)).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import { sigmoid } from "../../engine/ops/elementwise.ts";
import { logSoftmax } from "../../engine/ops/softmax.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { noGrad } from "../../engine/autograd.ts";
import { listSplit } from "../../data/dataset.ts";
import { IMAGENET } from "../../data/loader.ts";
import { loadSample } from "../../data/sample.ts";
import { FcSiam } from "../../models/fc_siam.ts";
import type { ChangeDetector } from "../../models/model.ts";

export const FIX = new URL("../../../shared/fixtures/", import.meta.url).pathname;
export const present = existsSync(FIX + "weights/tinycd_levir.safetensors");
if (!present) console.log(`skipping parity tests: ${FIX} is absent (it ships beside the repo)`);

export async function run(model: ChangeDetector, names: string[], post: "sigmoid" | "logsoftmax") {
  const pairs = (await listSplit(FIX + "levir-cd")).filter((p) => names.includes(p.name));
  const outs = new Map<string, Float32Array>();
  for (const p of pairs) {
    const s = await loadSample(p, undefined, IMAGENET);
    const shape = [1, 3, s.height, s.width];
    const y = scope(() =>
      noGrad(() => {
        const logits = model.forward(tensor(s.a, shape), tensor(s.b, shape));
        return post === "sigmoid" ? sigmoid(logits) : logSoftmax(logits, 1);
      })
    );
    outs.set(p.name, (await y.read()) as Float32Array);
    y.dispose();
  }
  return outs;
}

export function maxAbsDiff(a: Float32Array, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Seeded FC-Siam weights against the reference log-probabilities (max |Δ| ≤ 1e-4); returns
 * the largest difference. */
export async function fcParity(variant: "ef" | "conc" | "diff", file: string): Promise<number> {
  const ref = readSafetensors(`${FIX}weights/${file}.reference.safetensors`);
  const names = [...ref.keys()].map((k) => k.replace(/^logprob\./, ""));
  const model = new FcSiam(variant).eval();
  loadCheckpoint(model, `${FIX}weights/${file}.safetensors`);
  const outs = await run(model, names, "logsoftmax");
  let worst = 0;
  for (const name of names) {
    const d = maxAbsDiff(outs.get(name)!, ref.get(`logprob.${name}`)!.data);
    assert.ok(d <= 1e-4, `${file} ${name}: max |Δ log-prob| ${d}`);
    worst = Math.max(worst, d);
  }
  model.dispose();
  return worst;
}
