// Open-CD's "ChangeFormer" (Siamese SegFormer-b0): the MiT-b0 stage outputs alone, then the whole
// detector (logits, features, loss and every gradient) against the upstream code's reference
// (../shared/fixtures/README.md, "changeformer_mit_b0_seed0"), and a training step at 2 × 32².

import assert from "node:assert/strict";
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
import { ChangeFormer, createChangeFormer } from "../../models/changeformer.ts";
import { randArray } from "../util.ts";
import { checkOpenCdParity, FIX, fixturePresent, maxAbsDiff } from "./opencd_parity.ts";

const STEM = "changeformer_mit_b0_seed0";

Deno.test({
  name: "MiT-b0 with seeded Open-CD weights reproduces mmseg's four stage outputs",
  ignore: !fixturePresent(STEM),
  fn: async () => {
    await initDevice();
    const model = new ChangeFormer();
    loadCheckpoint(model, `${FIX}weights/${STEM}.safetensors`);
    model.eval();
    const ref = readSafetensors(`${FIX}weights/${STEM}.reference.safetensors`);
    const pair = (await listSplit(FIX + "levir-cd")).find((p) => ref.has(`feat.${p.name}.s1`))!;
    const s = await loadSample(pair, undefined, IMAGENET);
    const feats = scope(() =>
      noGrad(() =>
        model.backbone.forward(tensor(s.a, [1, 3, s.height, s.width])).map((t) => t.keep())
      )
    );
    for (let i = 0; i < feats.length; i++) {
      const want = ref.get(`feat.${pair.name}.s${i + 1}`)!.data;
      let m = 0;
      for (const v of want) m = Math.max(m, Math.abs(v));
      const d = maxAbsDiff(`s${i + 1}`, (await feats[i].read()) as Float32Array, want);
      console.log(`s${i + 1}: max |Δ| ${d.toExponential(2)} (max |ref| ${m.toFixed(3)})`);
      assert.ok(d <= 1e-4 * Math.max(1, m), `MiT stage ${i + 1}: max |Δ| ${d}`);
      feats[i].kept = false;
      feats[i].dispose();
    }
    model.dispose();
  },
});

Deno.test({
  name: "ChangeFormer (MiT-b0) matches Open-CD: logits, features, loss and all 177 gradients",
  ignore: !fixturePresent(STEM),
  fn: async () => {
    const model = new ChangeFormer();
    const r = await checkOpenCdParity(model, STEM);
    console.log(JSON.stringify(r));
    model.dispose();
  },
});

Deno.test("ChangeFormer has Open-CD's 3,846,754 parameters and trains on a 2 × 32² batch", async () => {
  await initDevice();
  const model = createChangeFormer(1).train();
  assert.equal(model.parameterCount(), 3_846_754);
  resetDropoutStream(7, 1);
  const shape = [2, 3, 32, 32];
  const labels = Uint32Array.from(randArray(2 * 32 * 32, 3), (v) => (v > 0 ? 1 : 0));
  const lossValue = scope(() => {
    const logits = model.forward(
      tensor(randArray(2 * 3 * 32 * 32, 1), shape),
      tensor(randArray(2 * 3 * 32 * 32, 2), shape),
    );
    assert.deepEqual(logits.shape, [2, 2, 32, 32]);
    const { loss } = cdLoss(logits, tensor(labels, [2, 32, 32], "u32"));
    backward(loss);
    return loss.keep();
  });
  const loss = ((await lossValue.read()) as Float32Array)[0];
  assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
  for (const [name, p] of model.namedParameters()) {
    assert.ok(p.grad, `${name} got no gradient`);
    const g = (await p.grad.read()) as Float32Array;
    assert.ok(g.every(Number.isFinite), `${name}: non-finite gradient`);
    assert.ok(g.some((v) => v !== 0), `${name}: gradient is all zero`);
  }
  lossValue.kept = false;
  lossValue.dispose();
  model.dispose();
});

/** Mean and standard deviation of a parameter's values. */
function moments(v: Float32Array): { mean: number; std: number; maxAbs: number } {
  let s = 0, s2 = 0, m = 0;
  for (const x of v) {
    s += x;
    s2 += x * x;
    m = Math.max(m, Math.abs(x));
  }
  const mean = s / v.length;
  return { mean, std: Math.sqrt(Math.max(0, s2 / v.length - mean * mean)), maxAbs: m };
}

Deno.test("ChangeFormer's seeded init follows mmseg's init_weights (MiT, SegformerHead)", async () => {
  await initDevice();
  const model = createChangeFormer(3);
  // [name pattern, expected std (0: all zero, 1 with const: all equal to it)].
  const conv = (fanOut: number) => Math.sqrt(2 / fanOut);
  const rules: [RegExp, { std?: number; value?: number; bound?: number }][] = [
    [/norm\d?\.weight$|layers\.\d\.2\.weight$|\.bn\.weight$/, { value: 1 }],
    [/norm\d?\.bias$|layers\.\d\.2\.bias$|\.bn\.bias$|_bias$|\.bias$/, { value: 0 }],
    [/layers\.0\.0\.projection\.weight$/, { std: conv(7 * 7 * 32) }],
    [/layers\.3\.0\.projection\.weight$/, { std: conv(3 * 3 * 256) }],
    [/layers\.0\.1\.0\.attn\.sr\.weight$/, { std: conv(8 * 8 * 32) }],
    [/layers\.1\.1\.1\.ffn\.layers\.0\.weight$/, { std: conv(256) }],
    [/layers\.2\.1\.0\.ffn\.layers\.1\.weight$/, { std: conv(9) }], // depthwise: fan_out / groups
    [/layers\.3\.1\.1\.ffn\.layers\.4\.weight$/, { std: conv(256) }],
    [/out_proj\.weight$/, { std: 0.02 }],
    [/layers\.3\.1\.0\.attn\.attn\.in_proj_weight$/, { bound: Math.sqrt(6 / (4 * 256)) }],
    [/decode_head\.convs\.2\.conv\.weight$/, { std: conv(256) }],
    [/decode_head\.fusion_conv\.conv\.weight$/, { std: conv(256) }],
    [/decode_head\.conv_seg\.weight$/, { std: 0.01 }],
  ];
  let checked = 0;
  for (const [name, p] of model.namedParameters()) {
    const rule = rules.find(([re]) => re.test(name))?.[1];
    if (!rule) continue;
    const m = moments((await p.read()) as Float32Array);
    if (rule.value !== undefined) {
      assert.ok(m.std === 0 && m.mean === rule.value, `${name}: not all ${rule.value}`);
    } else {
      const std = rule.std ?? rule.bound! / Math.sqrt(3); // uniform(−b, b)
      assert.ok(Math.abs(m.std / std - 1) < 0.1, `${name}: std ${m.std}, want ${std}`);
      assert.ok(Math.abs(m.mean) < 0.1 * std, `${name}: mean ${m.mean}`);
      if (rule.bound) assert.ok(m.maxAbs <= rule.bound, `${name}: |w| up to ${m.maxAbs}`);
    }
    checked++;
  }
  // Every LN/BN weight and every bias (129), plus the 10 weights named above.
  assert.equal(checked, 139, `${checked} parameters matched a rule`);
  model.dispose();
});
