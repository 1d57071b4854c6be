// Seeded initialisation of the CNN detectors against the distributions of the original PyTorch
// code (issue 22: training parity needs the same starting distributions). FC-EF/Conc/Diff keep
// PyTorch's defaults: kaiming_uniform(a = √5) weights and uniform biases, both within
// ±1/√fan_in, where fan_in = weight.shape[1]·k² for Conv2d and ConvTranspose2d alike (so a
// transposed conv's fan-in counts its OUTPUT channels). SNUNet follows Open-CD: Conv2d weights
// kaiming_normal(fan_out, relu), transposed up-convs and every bias PyTorch's defaults, conv_seg
// N(0, 0.01) with bias 0. BatchNorm: weight 1, bias 0.

import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { modelEntry } from "../../models/registry.ts";

function moments(v: Float32Array) {
  let s = 0, s2 = 0, m = 0;
  for (const x of v) {
    s += x;
    s2 += x * x;
    m = Math.max(m, Math.abs(x));
  }
  const mean = s / v.length;
  return { mean, std: Math.sqrt(Math.max(0, s2 / v.length - mean * mean)), maxAbs: m };
}

/** PyTorch's default bound for a conv's weight and bias: 1/√(weight.shape[1]·kh·kw). */
const defaultBound = (w: readonly number[]) => 1 / Math.sqrt(w[1] * w[2] * w[3]);

type Rule = { kind: "const"; value: number } | { kind: "uniform"; bound: number } | {
  kind: "normal";
  std: number;
} | { kind: "skip" };

async function checkInit(
  name: string,
  rule: (param: string, shapes: Map<string, number[]>) => Rule,
) {
  await initDevice();
  const model = modelEntry(name).create(1);
  const params = model.namedParameters();
  const shapes = new Map(params.map(([n, t]) => [n, [...t.shape]]));
  let checked = 0;
  for (const [n, t] of params) {
    const r = rule(n, shapes);
    if (r.kind === "skip") continue;
    const m = moments((await t.read()) as Float32Array);
    const what = `${name} ${n} [${t.shape.join(", ")}]`;
    if (r.kind === "const") {
      assert.ok(m.std === 0 && m.mean === r.value, `${what}: not all ${r.value}`);
    } else if (r.kind === "uniform") {
      assert.ok(m.maxAbs <= r.bound, `${what}: |w| up to ${m.maxAbs}, bound ${r.bound}`);
      // The spread only where the sample is large enough to pin it (weights; biases are short).
      if (t.size >= 256) {
        const want = r.bound / Math.sqrt(3);
        assert.ok(Math.abs(m.std / want - 1) < 0.1, `${what}: std ${m.std}, want ${want}`);
      }
    } else if (t.size >= 256) {
      assert.ok(Math.abs(m.std / r.std - 1) < 0.1, `${what}: std ${m.std}, want ${r.std}`);
      assert.ok(Math.abs(m.mean) < 0.1 * r.std, `${what}: mean ${m.mean}`);
    } else {
      // A few dozen normal draws (ECAM's 16→4 fc): only a loose band.
      assert.ok(Math.abs(m.std / r.std - 1) < 0.4, `${what}: std ${m.std}, want ${r.std}`);
    }
    checked++;
  }
  model.dispose();
  return checked;
}

function weightOf(param: string, shapes: Map<string, number[]>): number[] {
  const w = shapes.get(param.replace(/bias$/, "weight"));
  if (!w || w.length !== 4) throw new Error(`${param}: no 4-D weight beside it`);
  return w;
}

for (const name of ["fc_ef", "fc_siam_conc", "fc_siam_diff"]) {
  Deno.test(`${name}: seeded init has PyTorch's default conv / transposed-conv distributions`, async () => {
    const n = await checkInit(name, (p, shapes) => {
      if (/^bn/.test(p)) return { kind: "const", value: p.endsWith("weight") ? 1 : 0 };
      return { kind: "uniform", bound: defaultBound(weightOf(p, shapes)) };
    });
    // 10 encoder + 9 decoder convs + 4 up-convs + conv11d (weight, bias), 19 BNs (weight, bias).
    assert.equal(n, 2 * 24 + 2 * 19);
  });
}

Deno.test("snunet_c16: seeded init follows Open-CD (kaiming fan_out convs, default up-convs)", async () => {
  const n = await checkInit("snunet_c16", (p, shapes) => {
    if (/\.bn\d\.(weight|bias)$/.test(p)) {
      return { kind: "const", value: p.endsWith("weight") ? 1 : 0 };
    }
    if (/conv_seg\.weight$/.test(p)) return { kind: "normal", std: 0.01 };
    if (/conv_seg\.bias$/.test(p)) return { kind: "const", value: 0 };
    const w = weightOf(p, shapes);
    if (p.endsWith("bias") || /\.up\.weight$/.test(p)) {
      return { kind: "uniform", bound: defaultBound(w) };
    }
    return { kind: "normal", std: Math.sqrt(2 / (w[0] * w[2] * w[3])) };
  });
  assert.ok(n > 100, `only ${n} parameters checked`);
});

Deno.test("tinycd: the EfficientNet-b4 backbone follows torchvision's init (kaiming fan_out, biases 0)", async () => {
  const n = await checkInit("tinycd", (p, shapes) => {
    if (!p.startsWith("_backbone.")) return { kind: "skip" };
    const w = shapes.get(p.replace(/(weight|bias)$/, "weight"))!;
    if (w.length === 1) return { kind: "const", value: p.endsWith("weight") ? 1 : 0 }; // BN
    if (p.endsWith("bias")) return { kind: "const", value: 0 }; // squeeze-excite fc biases
    return { kind: "normal", std: Math.sqrt(2 / (w[0] * w[2] * w[3])) };
  });
  // every backbone tensor: 30 convs, 30 BNs (weight, bias), 10 squeeze-excite fc1/fc2 with biases
  assert.equal(n, 127);
});
