// ChangerEx MiT-b0: FDAF's warp against a float64 reference of Open-CD's (grid from
// torch.linspace, flow / (w, h), bilinear grid_sample with align_corners True and zero padding)
// and by finite differences through the flow; parity with the upstream code's logits, features,
// flow and every gradient (../shared/fixtures); and a training step at a small size.

import assert from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { cdLoss } from "../../engine/ops/cd_loss.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { ChangerEx, warp } from "../../models/changer.ts";
import { assertClose, gradCheck, randArray, randomPairBatch } from "../util.ts";
import { checkOpenCdParity, fixturePresent } from "./opencd_parity.ts";

await initDevice();

/** float64 form of Open-CD's FDAF.warp for x [B, C, H, W] and flow [B, 2, H, W]. */
function warpRef(x: ArrayLike<number>, flow: ArrayLike<number>, shape: number[]): Float64Array {
  const [n, c, h, w] = shape;
  const lin = (k: number, len: number) => (len === 1 ? -1 : -1 + (2 * k) / (len - 1));
  const out = new Float64Array(n * c * h * w);
  for (let b = 0; b < n; b++) {
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        const gx = lin(xx, w) + flow[((b * 2) * h + y) * w + xx] / w;
        const gy = lin(y, h) + flow[((b * 2 + 1) * h + y) * w + xx] / h;
        const ix = ((gx + 1) / 2) * (w - 1), iy = ((gy + 1) / 2) * (h - 1);
        const x0 = Math.floor(ix), y0 = Math.floor(iy);
        for (let ch = 0; ch < c; ch++) {
          let v = 0;
          for (
            const [cx, cy, wt] of [
              [x0, y0, (x0 + 1 - ix) * (y0 + 1 - iy)],
              [x0 + 1, y0, (ix - x0) * (y0 + 1 - iy)],
              [x0, y0 + 1, (x0 + 1 - ix) * (iy - y0)],
              [x0 + 1, y0 + 1, (ix - x0) * (iy - y0)],
            ]
          ) {
            if (cx >= 0 && cx < w && cy >= 0 && cy < h) {
              v += wt * x[((b * c + ch) * h + cy) * w + cx];
            }
          }
          out[((b * c + ch) * h + y) * w + xx] = v;
        }
      }
    }
  }
  return out;
}

Deno.test("FDAF warp matches a float64 reference of Open-CD's (odd sizes, flows off the image)", async () => {
  for (const shape of [[2, 3, 5, 7], [1, 4, 9, 6]]) {
    const [n, c, h, w] = shape;
    const x = randArray(n * c * h * w, 11);
    // Offsets of up to ±3 pixels' worth (flow/w units): some samples fall outside.
    const flow = randArray(n * 2 * h * w, 12, -6, 6);
    const out = scope(() => warp(tensor(x, shape), tensor(flow, [n, 2, h, w])));
    assertClose(await out.read(), warpRef(x, flow, shape), {
      atol: 2e-6,
      rtol: 1e-5,
      what: `warp [${shape}]`,
    });
    out.dispose();
  }
});

Deno.test("FDAF warp gradient w.r.t. image and flow: finite differences", async () => {
  const shape = [2, 3, 5, 7];
  // Small flows keep the finite differences away from the bilinear kinks at pixel centres.
  await gradCheck(
    (x, f) => warp(x, f),
    [
      { data: randArray(2 * 3 * 5 * 7, 21), shape },
      { data: randArray(2 * 2 * 5 * 7, 22, -0.4, 0.4), shape: [2, 2, 5, 7] },
    ],
    { eps: 1e-3, maxPoints: 40 },
  );
});

Deno.test({
  name: "ChangerEx MiT-b0 reproduces Open-CD's logits, features, flow and gradients",
  ignore: !fixturePresent("changer_ex_mit_b0_seed0"),
  fn: async () => {
    const model = new ChangerEx();
    assert.equal(model.parameterCount(), 3_457_250);
    const r = await checkOpenCdParity(model, "changer_ex_mit_b0_seed0");
    console.log(JSON.stringify(r, null, 1));
    model.dispose();
  },
});

Deno.test("ChangerEx trains: batch 2 × 64², finite loss, every parameter gets a gradient", async () => {
  const model = new ChangerEx(1).train();
  assert.equal(model.parameterCount(), 3_457_250);
  const [n, size] = [2, 64];
  const loss = scope(() => {
    const { a, b, labels } = randomPairBatch(n, size);
    const y = model.forward(a, b);
    assert.deepEqual(y.shape, [n, 2, size, size]);
    const l = cdLoss(y, labels).loss;
    backward(l);
    return l;
  });
  const value = await loss.item();
  loss.dispose();
  assert.ok(Number.isFinite(value), `loss ${value}`);
  for (const [name, p] of model.namedParameters()) {
    assert.ok(p.grad, `${name} has no gradient`);
    const g = await p.grad.read();
    assert.ok(g.every(Number.isFinite), `${name}: non-finite gradient`);
    // The depthwise conv's bias before the InstanceNorm cancels (its gradient is 0 by design).
    if (!name.endsWith("flow_make.0.bias")) {
      assert.ok(g.some((v) => v !== 0), `${name}: zero gradient`);
    }
  }
  model.dispose();
});

Deno.test("ChangerEx head starts as Changer.init_weights() leaves it", async () => {
  const model = new ChangerEx(5);
  const p = model.stateDict();
  const values = async (name: string) => Array.from(await p.get(`decode_head.${name}`)!.read());
  const rms = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
  const maxAbs = (v: number[]) => Math.max(...v.map(Math.abs));
  // conv_seg N(0, 0.01), bias 0 (BaseDecodeHead's init_cfg).
  assert.ok(Math.abs(rms(await values("conv_seg.weight")) / 0.01 - 1) < 0.15);
  assert.ok((await values("conv_seg.bias")).every((v) => v === 0));
  // fusion_conv: kaiming normal, fan_out = 64 (ConvModule.init_weights); BN 1 / 0.
  assert.ok(Math.abs(rms(await values("fusion_conv.conv.weight")) / Math.sqrt(2 / 64) - 1) < 0.03);
  assert.ok((await values("fusion_conv.bn.weight")).every((v) => v === 1));
  // convs (inside a plain nn.ModuleList) and FDAF keep PyTorch's U(±1/√fan_in).
  const c1 = await values("convs.1.conv.weight");
  assert.ok(maxAbs(c1) <= 1 / 8 && maxAbs(c1) > 0.9 / 8, `convs.1 bound ${maxAbs(c1)}`);
  const dw = await values("neck_layer.flow_make.0.weight");
  assert.ok(maxAbs(dw) <= 1 / 5 && maxAbs(dw) > 0.9 / 5, `flow_make.0 bound ${maxAbs(dw)}`);
  model.dispose();
});

Deno.test("ChangerEx refuses inputs that are not multiples of 32", () => {
  const model = new ChangerEx(2);
  scope(() => {
    const x = tensor(new Float32Array(3 * 48 * 40), [1, 3, 48, 40]);
    assert.throws(() => model.forward(x, x), /divisible by 32/);
  });
  model.dispose();
});
