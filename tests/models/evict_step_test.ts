// Models that evict activations during their forward (Tensor.evict): TinyCD its EfficientNet
// blocks' expansion outputs (BN + SiLU, written again for the depthwise conv's weight gradient),
// the residual blocks' projection outputs and the decoder's upsampling inputs (read by no
// backward rule) (models/efficientnet.ts, tinycd.ts); MiT (ChangeFormer) its Mix-FFN GELU outputs
// (written again for fc2's weight gradient), LN1's output, the sr conv's layout copy and the
// merged heads (written again), LN2's output, the projections before the head split and the
// branch outputs (never) (models/mit.ts), and its head's resized levels (never); BIT its decoder
// blocks' LN outputs, merged heads and hidden ReLU outputs (written again), queries before the
// head split and branch outputs (never), and its head's upsampled maps (models/bit.ts); SNUNet
// its nested blocks' first BN + ReLU outputs (written again for the second conv's weight
// gradient), second BN outputs and residual sums (read by no backward rule) and ECAM's stacked
// outputs, partial sums and product (models/snunet.ts; its dense skips are read as parts, no
// concat); FC-EF, FC-Siam-Conc and FC-Siam-Diff an up-convolution's output where it is padded to
// its skip's odd size (read by no backward rule; at 36² one stage is: its other decoder inputs
// are read as parts and stay) (models/fc_siam.ts); LightCDNet-s the BatchNorm outputs
// between the parts of its conv sequences (written again for the next conv's weight gradient,
// models/lightcdnet.ts). Against the keep path (eviction
// off) the loss, every parameter gradient and every BatchNorm's running statistics are bit-identical,
// and the step's peak is lower. (ChangerEx-MiT evicts the same, but its warp's atomic sums are
// not bit-reproducible between two steps.)

import assert from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { resetDropoutStream } from "../../engine/nn/dropout.ts";
import { pool } from "../../engine/pool.ts";
import { flush } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { recomputeStats, setEviction, write } from "../../engine/tensor.ts";
import { MODELS } from "../../models/registry.ts";
import { trainingLoss } from "../../train/loss.ts";
import { initDevice, randomPairBatch } from "../util.ts";

await initDevice();

/** The models; whether a backward rule reads what they evict (then written again); whether
 * the step's peak is lower at this test's size, or only the memory live when the forward ends
 * (FC-Siam at 2 × 32² on a software adapter peaks in its deepest layers' split-K weight
 * gradients, when the evicted tensors are gone on both paths; at 8 × 512² on an H100's routes
 * it peaks at the start of the backward: tests/models/compile_peak_test.ts). */
/** Sizes above a model's minimum where its smallest input's peak is not the eviction's: BIT's
 * decoder at 32² is too small to hold its backbone's peak. */
const SIZE: Record<string, number> = { bit_r18: 64, fc_ef: 36, fc_siam_conc: 36, fc_siam_diff: 36 };

const CASES: { name: string; rewritten: boolean; lowerPeak: boolean }[] = [
  { name: "tinycd", rewritten: true, lowerPeak: true },
  { name: "changeformer_mit_b0", rewritten: true, lowerPeak: true },
  { name: "snunet_c16", rewritten: true, lowerPeak: true },
  { name: "bit_r18", rewritten: true, lowerPeak: true },
  { name: "lightcdnet_s", rewritten: true, lowerPeak: true },
  { name: "fc_ef", rewritten: false, lowerPeak: false },
  { name: "fc_siam_conc", rewritten: false, lowerPeak: false },
  { name: "fc_siam_diff", rewritten: false, lowerPeak: false },
];

for (const { name, rewritten, lowerPeak } of CASES) {
  const less = lowerPeak ? "below its peak" : "less live after the forward";
  Deno.test(`${name}: a training step with eviction and recompute equals the keep path bit for bit, ${less}`, async () => {
    const model = MODELS[name].create(0);
    model.train();
    const { a, b, labels } = randomPairBatch(2, SIZE[name] ?? MODELS[name].minSize ?? 32);
    for (const t of [a, b, labels]) t.keep();
    const params = model.parameters();
    const buffers = model.namedBuffers().filter(([n]) => /running_(mean|var)$/.test(n));
    const initial = await Promise.all(buffers.map(([, t]) => t.read()));
    const runs = [];
    for (const evict of [false, true]) {
      for (const p of params) p.grad = null;
      // The same running statistics before each step, the same stochastic-depth draws.
      buffers.forEach(([, t], i) => write(t, initial[i]));
      resetDropoutStream(0);
      flush();
      pool.poisonFree(NaN);
      setEviction(evict);
      const before = { ...recomputeStats };
      const base = pool.liveBytes;
      pool.peakLiveBytes = base;
      let loss = NaN, forwardEnd = NaN;
      try {
        const l = scope(() => {
          const l = trainingLoss(model, model.forward(a, b), labels);
          forwardEnd = pool.liveBytes - base;
          backward(l, undefined, { freeActivations: true });
          return l;
        });
        loss = await l.item();
        l.dispose();
      } finally {
        setEviction(true);
      }
      runs.push({
        loss,
        peak: pool.peakLiveBytes - base,
        forwardEnd,
        evictions: recomputeStats.evictions - before.evictions,
        recomputes: recomputeStats.recomputes - before.recomputes,
        // null: a parameter no output depends on (LightCDNet-s's last stages).
        grads: await Promise.all(
          params.map(async (p) => p.grad ? Array.from(await p.grad.read()) : null),
        ),
        running: await Promise.all(buffers.map(async ([, t]) => Array.from(await t.read()))),
      });
    }
    const [kept, evicted] = runs;
    assert.ok(Number.isFinite(kept.loss));
    assert.equal(evicted.loss, kept.loss);
    assert.equal(kept.recomputes, 0);
    assert.ok(evicted.evictions > 0, "nothing was evicted");
    if (rewritten) assert.ok(evicted.recomputes > 0, "nothing was written again");
    else assert.equal(evicted.recomputes, 0, "read by no rule, yet written again");
    params.forEach((p, i) =>
      assert.deepEqual(evicted.grads[i], kept.grads[i], `${p.name} gradient`)
    );
    buffers.forEach(([n], i) => {
      assert.deepEqual(evicted.running[i], kept.running[i], `${n} (moved once, as kept)`);
      assert.notDeepEqual(kept.running[i], Array.from(initial[i]), `${n} did not move`);
    });
    const below = `${evicted.forwardEnd} not below ${kept.forwardEnd}`;
    assert.ok(evicted.forwardEnd < kept.forwardEnd, `live after the forward: ${below}`);
    if (lowerPeak) {
      assert.ok(evicted.peak < kept.peak, `peak ${evicted.peak} not below ${kept.peak}`);
    } else assert.ok(evicted.peak <= kept.peak, `peak ${evicted.peak} above ${kept.peak}`);
    for (const t of [a, b, labels]) {
      t.kept = false;
      t.dispose();
    }
    for (const p of params) p.grad?.dispose();
    model.dispose();
  });
}
