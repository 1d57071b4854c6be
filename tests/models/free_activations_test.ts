// A training step of every registered model with backward's freeActivations: the same
// gradients as without it (every backward rule found what it saved), and a lower peak.

import { ok as assert } from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { resetDropoutStream } from "../../engine/nn/dropout.ts";
import { initDevice } from "../../engine/device.ts";
import { cdLoss } from "../../engine/ops/cd_loss.ts";
import { add } from "../../engine/ops/elementwise.ts";
import { pool } from "../../engine/pool.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { MODELS } from "../../models/registry.ts";
import { randArray } from "../util.ts";

await initDevice();

const B = 1;

/** Models whose backward sums with float atomics (ChangerEx: gridSample's image gradient in
 * FDAF's warp), so two identical steps agree only to rounding. */
const ATOMIC_SUMS = new Set(Object.keys(MODELS).filter((n) => n.startsWith("changer_ex")));

for (const name of Object.keys(MODELS)) {
  Deno.test(`${name}: a training step frees its activations during backward, same gradients`, async () => {
    const S = MODELS[name].minSize ?? 32;
    const model = MODELS[name].create(0);
    model.train();
    const a = tensor(randArray(B * 3 * S * S, 1), [B, 3, S, S]).keep();
    const b = tensor(randArray(B * 3 * S * S, 2), [B, 3, S, S]).keep();
    const label = tensor(Uint32Array.from({ length: B * S * S }, (_, i) => (i % 7 === 0 ? 1 : 0)), [
      B,
      S,
      S,
    ], "u32").keep();
    const params = model.parameters();
    const runs: { grads: (Float32Array | null)[]; peak: number }[] = [];
    for (const freeActivations of [false, true]) {
      for (const p of params) {
        p.grad?.dispose();
        p.grad = null;
      }
      resetDropoutStream(0); // the same dropout masks both times
      const base = pool.liveBytes;
      pool.peakLiveBytes = base;
      scope(() => {
        // The training loss: the logits' CE plus any deep supervision / auxiliary head.
        const { loss } = cdLoss(model.forward(a, b), label);
        backward(model.auxLoss ? add(loss, model.auxLoss(label)) : loss, undefined, {
          freeActivations,
        });
      });
      const peak = pool.peakLiveBytes - base;
      // A parameter the forward never reaches with gradients (IFN's frozen encoder) has none.
      const grads: (Float32Array | null)[] = [];
      for (const p of params) grads.push(p.grad ? (await p.grad.read()) as Float32Array : null);
      runs.push({ grads, peak });
    }
    runs[0].grads.forEach((g, i) => {
      const h = runs[1].grads[i];
      assert((g === null) === (h === null), `${name}: parameter ${i} has a gradient only once`);
      if (g === null || h === null) return;
      // Bit-identical, except where an atomic sum decides the order of additions (there, 1e-8
      // absolute covers gradients that are zero but for rounding: FDAF's flow bias).
      const tol = ATOMIC_SUMS.has(name)
        ? 1e-8 + 1e-5 * g.reduce((m, v) => Math.max(m, Math.abs(v)), 0)
        : 0;
      for (let k = 0; k < g.length; k++) {
        if (!(Math.abs(g[k] - h[k]) <= tol)) {
          throw new Error(`${name}: parameter ${i} gradient differs at ${k}: ${g[k]} vs ${h[k]}`);
        }
      }
    });
    assert(runs[1].peak < runs[0].peak, `${name}: peak ${runs[1].peak} not below ${runs[0].peak}`);
    for (const t of [a, b, label]) {
      t.kept = false;
      t.dispose();
    }
    for (const p of params) p.grad?.dispose();
  });
}
