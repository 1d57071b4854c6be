// Recording a training step stays cheap: once the buffer pool is warm, a step of every registered
// model gets the same buffers as the step before (pool.ts hands out the earliest-created free
// buffer) and the same ring slots for its dropout seeds and AdamW's hyper-parameters
// (slot_ring.ts), so the recorder's cached bind groups serve every dispatch.
//
// The property belongs to the pool and the rings, not to a model, so the suite steps one model of
// each family of ops (three to five warm steps each cost up to two minutes on two cores):
// FC-Siam (conv, BN, pooling, transposed conv, dropout), TinyCD (EfficientNet: depthwise, SE,
// SiLU norms, stochastic depth), BIT (ResNet, tokens, attention with lanes), ChangerEx-MiT-b0
// (MiT, exchanges, SegFormer head), LightCDNet-s (ShuffleNet, criss-cross attention, OHEM,
// auxiliary head), STANet (BCL on the distance map), ChangeStar-UPerNet (overlapping adaptive
// pooling), ChangerEx-R18 and IFN (a frozen encoder: AdamW's parameter groups). The others run
// their code at other widths or add ops already here; BIND_GROUP_MODELS=all (or a list) steps them:
//   BIND_GROUP_MODELS=all deno test -A tests/models/bind_group_reuse_test.ts

import { ok as assert } from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { trainingLoss } from "../../train/loss.ts";
import { initDevice } from "../../engine/device.ts";
import { AdamW } from "../../engine/optim/adamw.ts";
import { stats, sync } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { MODELS } from "../../models/registry.ts";
import { trainableParameters } from "../../train/trainer.ts";
import { randArray } from "../util.ts";

await initDevice();

/** Batch of the step, unless the model needs more (MODELS[name].minBatch). */
const BATCH = 1;

const SUITE = [
  "fc_siam_diff",
  "tinycd",
  "bit_r18",
  "changer_ex_mit_b0",
  "lightcdnet_s",
  "stanet_base_r18",
  "changestar_upernet_r18",
  "changer_ex_r18",
  "ifn_vgg16",
];
const asked = Deno.env.get("BIND_GROUP_MODELS");
const names = asked === "all" ? Object.keys(MODELS) : asked ? asked.split(",") : SUITE;
for (const n of names) if (!MODELS[n]) throw new Error(`BIND_GROUP_MODELS: unknown model ${n}`);

for (const name of names) {
  Deno.test(`${name}: a warm training step reuses its bind groups`, async () => {
    const S = MODELS[name].minSize ?? 32;
    const B = MODELS[name].minBatch ?? BATCH;
    const model = MODELS[name].create(0);
    model.train();
    const opt = new AdamW(trainableParameters(model, MODELS[name]), { lr: 1e-3 });
    const a = tensor(randArray(B * 3 * S * S, 1), [B, 3, S, S]).keep();
    const b = tensor(randArray(B * 3 * S * S, 2), [B, 3, S, S]).keep();
    const label = tensor(Uint32Array.from({ length: B * S * S }, (_, i) => (i % 7 === 0 ? 1 : 0)), [
      B,
      S,
      S,
    ], "u32").keep();
    const step = () =>
      scope(() => {
        const loss = trainingLoss(model, model.forward(a, b), label);
        opt.zeroGrad();
        backward(loss, undefined, { freeActivations: true });
        opt.step();
      });
    // Three warm steps: the first creates the buffers; a request that found no free buffer of
    // its class took a larger one (pool.ts), so the next step may find its own class's buffer
    // taken and create another, once: ChangerEx-MiT-b0 and LightCDNet-s settle at the third.
    for (let i = 0; i < 3; i++) {
      step();
      await sync();
    }
    const groups0 = stats.bindGroupsCreated, dispatches0 = stats.dispatches;
    step();
    await sync();
    const created = stats.bindGroupsCreated - groups0, dispatches = stats.dispatches - dispatches0;
    // Rotating buffers made 63–89 % of the dispatches create one (FC-Siam-Diff, TinyCD), and
    // rotating ring slots about 30 a step.
    assert(created === 0, `${name}: ${created} bind groups created for ${dispatches} dispatches`);
    for (const t of [a, b, label]) {
      t.kept = false;
      t.dispose();
    }
    opt.dispose();
    opt.arena.dispose();
  });
}
