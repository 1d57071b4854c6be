// SNUNet-CD/ECAM: seeded Open-CD weights reproduce Open-CD's backbone features on real LEVIR-CD
// crops (../shared/fixtures), and the full detector trains (forward + backward) at its size.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { backward, noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import { resetDropoutStream } from "../../engine/nn/dropout.ts";
import { cdLoss } from "../../engine/ops/cd_loss.ts";
import { readSafetensors } from "../../engine/safetensors.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { listSplit } from "../../data/dataset.ts";
import { IMAGENET } from "../../data/loader.ts";
import { loadSample } from "../../data/sample.ts";
import { SNUNet } from "../../models/snunet.ts";
import { activeProfile, type DeviceProfile, withProfile } from "../../kernels/device_profile.ts";
import { assertClose, randomPairBatch } from "../util.ts";

const FIX = new URL("../../../shared/fixtures/", import.meta.url).pathname;
const WEIGHTS = FIX + "weights/snunet_c16_backbone_seed0";
const present = existsSync(WEIGHTS + ".safetensors");
if (!present) console.log(`skipping SNUNet parity: ${FIX} is absent (it ships beside the repo)`);

/** Rows and columns 96–159 of a [3, 256, 256] image. */
const CROP = { at: 96, size: 64 };
function crop(chw: Float32Array, width: number): Float32Array {
  const { at, size } = CROP;
  const out = new Float32Array(3 * size * size);
  const height = chw.length / 3 / width;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < size; y++) {
      const src = (c * height + at + y) * width + at;
      out.set(chw.subarray(src, src + size), (c * size + y) * size);
    }
  }
  return out;
}

Deno.test({
  name: "SNUNet-c16 backbone with seeded Open-CD weights reproduces Open-CD's ECAM features",
  ignore: !present,
  fn: async () => {
    await initDevice();
    const ref = readSafetensors(WEIGHTS + ".reference.safetensors");
    const names = [...ref.keys()].map((k) => k.replace(/^feat\./, ""));
    const model = new SNUNet().eval();
    loadCheckpoint(model.backbone, WEIGHTS + ".safetensors");
    const pairs = (await listSplit(FIX + "levir-cd")).filter((p) => names.includes(p.name));
    assert.equal(pairs.length, names.length);
    const shape = [1, 3, CROP.size, CROP.size];
    for (const p of pairs) {
      const s = await loadSample(p, undefined, IMAGENET);
      const feat = scope(() =>
        noGrad(() =>
          model.backbone.forward(
            tensor(crop(s.a, s.width), shape),
            tensor(crop(s.b, s.width), shape),
          )
        )
      );
      const got = (await feat.read()) as Float32Array;
      feat.dispose();
      const want = ref.get(`feat.${p.name}`)!.data;
      assert.equal(got.length, want.length);
      let maxAbs = 0, maxRef = 0;
      for (let i = 0; i < got.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
        maxRef = Math.max(maxRef, Math.abs(want[i]));
      }
      console.log(`${p.name}: max |Δ| ${maxAbs.toExponential(2)} (max |ref| ${maxRef.toFixed(3)})`);
      assert.ok(maxAbs <= 1e-4, `snunet_c16 ${p.name}: max |Δ feature| ${maxAbs}`);
    }
    model.dispose();
  },
});

Deno.test("SNUNet-c16 has Open-CD's 3,012,178 parameters and trains on a 32×32 pair", async () => {
  await initDevice();
  const model = new SNUNet(1).train();
  assert.equal(model.parameterCount(), 3_012_178);
  const names = [...model.stateDict().keys()];
  assert.ok(names.includes("backbone.conv0_4.conv1.weight"));
  assert.ok(names.includes("decode_head.conv_seg.weight"));
  const [n, size] = [2, 32];
  const logits = scope(() => {
    const { a, b, labels } = randomPairBatch(n, size);
    const y = model.forward(a, b);
    backward(cdLoss(y, labels).loss);
    return y;
  });
  assert.deepEqual(logits.shape, [n, 2, size, size]);
  assert.ok((await logits.read()).every(Number.isFinite));
  logits.dispose();
  // Every parameter gets a finite gradient, and every layer's weight a non-zero one.
  for (const [name, p] of model.namedParameters()) {
    assert.ok(p.grad, `${name} has no gradient`);
    const g = await p.grad.read();
    assert.ok(g.every(Number.isFinite), `${name}: non-finite gradient`);
    if (name.endsWith("weight")) assert.ok(g.some((v) => v !== 0), `${name}: zero gradient`);
  }
  model.dispose();
});

Deno.test("SNUNet-c16 on the fused F(4×4) routes (decoder nodes' parts read and written by the fused kernels): logits and every gradient as on the default routes", async () => {
  await initDevice();
  const step = async (profile: DeviceProfile) => {
    const model = new SNUNet(1).train();
    resetDropoutStream(7); // the head's Dropout2d draws the same channels both times
    const y = withProfile(profile, () =>
      scope(() => {
        const { a, b, labels } = randomPairBatch(2, 32);
        const y = model.forward(a, b);
        backward(cdLoss(y, labels).loss);
        return y;
      }));
    const out = { logits: await y.read(), grads: new Map<string, Float32Array>() };
    for (const [name, p] of model.namedParameters()) {
      out.grads.set(name, (await p.grad!.read()) as Float32Array);
    }
    y.dispose();
    model.dispose();
    return out;
  };
  const base = await step(activeProfile());
  const fused = await step({ ...activeProfile(), fusedWino4MaxChannels: 128 });
  assertClose(fused.logits, base.logits, { what: "logits", atol: 1e-4, rtol: 1e-4 });
  for (const [name, g] of base.grads) {
    const scale = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    // A bias before a BatchNorm has a gradient of zero up to rounding (~1e-9): absolute floor.
    assertClose(fused.grads.get(name)!, g, { what: name, atol: 1e-4 * scale + 1e-7, rtol: 1e-3 });
  }
});
