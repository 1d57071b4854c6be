// How far f16 storage of Winograd F(4×4)'s V and P (engine/precision.ts halfInference) moves a
// whole model's output: the fixture models (seeded weights of the original code, the parity
// tests' files) on the real LEVIR pairs of ../shared/fixtures, each forward in f32 and under
// halfInference; per model the rms of the logit difference over the logits' rms, the largest
// change of the change probability, and the share of pixels whose predicted class differs.
// Numerics, not speed: the software adapter gives the same roundings as a GPU (f16 storage is
// IEEE round-to-nearest; the sums are f32 in both). Seeded weights are untrained, so this says
// how much the path perturbs logits, not how it changes a trained model's accuracy. Convs are
// routed as on an H100 (kernels/device_profile.ts H100_PROFILE), where the half path applies.
//   deno run -A bench/half_agreement.ts [--pairs 3] > bench/results/half_agreement_s19.md

import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { initDevice } from "../engine/device.ts";
import { loadCheckpoint } from "../engine/nn/checkpoint.ts";
import { noGrad } from "../engine/autograd.ts";
import { halfInference } from "../engine/precision.ts";
import { scope } from "../engine/scope.ts";
import { tensor } from "../engine/tensor.ts";
import { listSplit } from "../data/dataset.ts";
import { IMAGENET } from "../data/loader.ts";
import { loadSample } from "../data/sample.ts";
import { FcSiam } from "../models/fc_siam.ts";
import { SNUNet } from "../models/snunet.ts";
import type { ChangeDetector } from "../models/model.ts";
import { H100_PROFILE, withProfile } from "../kernels/device_profile.ts";

const { values } = parseArgs({ options: { pairs: { type: "string", default: "3" } } });
const FIX = new URL("../../shared/fixtures/", import.meta.url).pathname;
if (!existsSync(FIX + "weights")) {
  console.error(`half_agreement: ${FIX} is absent (it ships beside the repo)`);
  Deno.exit(2);
}
await initDevice();

const models: [string, () => ChangeDetector][] = [
  ["FC-EF", () => load(new FcSiam("ef").eval(), "fc_ef_seed0")],
  ["FC-Siam-Conc", () => load(new FcSiam("conc").eval(), "fc_siam_conc_seed0")],
  ["FC-Siam-Diff", () => load(new FcSiam("diff").eval(), "fc_siam_diff_seed0")],
  ["SNUNet-c16", () => {
    const m = new SNUNet().eval();
    loadCheckpoint(m.backbone, `${FIX}weights/snunet_c16_backbone_seed0.safetensors`);
    return m;
  }],
];

function load(m: FcSiam, file: string): FcSiam {
  loadCheckpoint(m, `${FIX}weights/${file}.safetensors`);
  return m;
}

const pairs = (await listSplit(FIX + "levir-cd")).slice(0, Number(values.pairs));
console.log(`# f16 Winograd storage at inference: whole-model deviation (bench/half_agreement.ts)

Fixture weights (seeded, untrained) on ${pairs.length} LEVIR pairs of 256², software adapter, convs
routed as on an H100.
Logits' rms error: rms(half − f32) / rms(f32) over all logits; Δp: the largest change of the
change probability (softmax of the 2 logits); class flips: pixels whose argmax differs.

| model | logits' rms error | max Δp | class flips |
| --- | --- | --- | --- |`);
for (const [name, make] of models) {
  const model = make();
  let se = 0, sr = 0, maxDp = 0, flips = 0, pixels = 0;
  for (const p of pairs) {
    const s = await loadSample(p, undefined, IMAGENET);
    const shape = [1, 3, s.height, s.width];
    const fwd = () =>
      withProfile(H100_PROFILE, () => model.forward(tensor(s.a, shape), tensor(s.b, shape)));
    const yf = scope(() => noGrad(fwd)), yh = scope(() => halfInference(fwd));
    const [f, h] = [await yf.read(), await yh.read()];
    yf.dispose();
    yh.dispose();
    const plane = s.height * s.width;
    for (let i = 0; i < f.length; i++) {
      se += (h[i] - f[i]) ** 2;
      sr += f[i] ** 2;
    }
    for (let i = 0; i < plane; i++) {
      const pf = 1 / (1 + Math.exp(f[i] - f[plane + i]));
      const ph = 1 / (1 + Math.exp(h[i] - h[plane + i]));
      maxDp = Math.max(maxDp, Math.abs(pf - ph));
      if ((f[plane + i] > f[i]) !== (h[plane + i] > h[i])) flips++;
    }
    pixels += plane;
  }
  model.dispose();
  const rms = Math.sqrt(se / sr);
  console.log(
    `| ${name} | ${rms.toExponential(2)} | ${maxDp.toExponential(2)} | ${flips} of ${pixels} (${
      (100 * flips / pixels).toFixed(3)
    } %) |`,
  );
}
