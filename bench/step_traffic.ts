// What a whole training step moves, pass by pass, without a GPU: one dry step (engine/profiler.ts:
// shapes flow, no kernel runs) at the GPU's batch and size under the H100's plans, with every
// dispatch's bound bytes summed per kernel (engine/recorder.ts's dispatch tap). A streaming pass
// reads and writes about what it binds, so bytes / bandwidth is its floor; kernels that reread an
// operand (GEMMs, Winograd patches) move more, and one that binds a buffer but touches part of it
// less. bench/roofline.ts counts the convolutions exactly; this counts everything else too (norms,
// activations, adds, concats, pools, the loss, AdamW) and the dispatches, so it says how much of a
// step's floor is outside the convs and which passes fusing would remove.
//   deno run -A bench/step_traffic.ts [--models fc_siam_diff,snunet_c16] [--batch 8] [--size 512]
//     [--bw 3.35] [--top 12] [--fused-wino4-max 64] [--matmul-split-below 1] [--half-inference]
//     [--winograd6]
// --half-inference counts the inference forward with Winograd F(4×4)'s V and P in f16
// (engine/precision.ts halfInference); the training step is unchanged.

import { parseArgs } from "node:util";
import { backward, noGrad } from "../engine/autograd.ts";
import { halfInference } from "../engine/precision.ts";
import { initDevice } from "../engine/device.ts";
import { AdamW } from "../engine/optim/adamw.ts";
import { countMacs } from "../engine/profiler.ts";
import { Random } from "../engine/random.ts";
import { type Binding, setDispatchTap } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { tensor } from "../engine/tensor.ts";
import { H100_PROFILE, setActiveProfile } from "../kernels/device_profile.ts";
import { modelEntry } from "../models/registry.ts";
import { trainingLoss } from "../train/loss.ts";
import { recipeMultipliers, trainableParameters } from "../train/trainer.ts";

/** Bytes and dispatches per kernel name over one call of `fn`. */
export interface Traffic {
  bytes: Map<string, number>;
  dispatches: Map<string, number>;
}

/** Sums every dispatch's bound bytes per kernel name while `fn` runs (dry: nothing recorded). */
export function traffic(fn: () => void): Traffic {
  const t: Traffic = { bytes: new Map(), dispatches: new Map() };
  const prev = setDispatchTap((label, bindings: Binding[], touched) => {
    const b = bindings.reduce((a, r, i) => a + (touched?.[i] ?? r.size), 0);
    t.bytes.set(label, (t.bytes.get(label) ?? 0) + b);
    t.dispatches.set(label, (t.dispatches.get(label) ?? 0) + 1);
  });
  try {
    countMacs(fn, { dry: true });
  } finally {
    setDispatchTap(prev);
  }
  return t;
}

/** The second of two dry training steps (the first makes AdamW's state) of `name`, and one
 * inference forward (eval mode, no gradients), as bench/gpu_train_step.ts times them. */
export function stepTraffic(
  name: string,
  batch: number,
  size: number,
  halfInfer = false,
): Traffic & { infer: Traffic } {
  const entry = modelEntry(name);
  const model = entry.create(0);
  const opt = new AdamW(trainableParameters(model, entry), {
    lr: entry.recipe.lr,
    multipliers: recipeMultipliers(model, entry),
  });
  const rng = new Random(0);
  const n = batch * 3 * size * size;
  const a = tensor(rng.normal(n), [batch, 3, size, size]).keep();
  const b = tensor(rng.normal(n), [batch, 3, size, size]).keep();
  const labels = Uint32Array.from(
    { length: batch * size * size },
    () => (rng.next() > 0.9 ? 1 : 0),
  );
  const l = tensor(labels, [batch, size, size], "u32").keep();
  model.train();
  const step = () =>
    scope(() => {
      const loss = trainingLoss(model, model.forward(a, b), l, { ohem: entry.recipe.loss?.ohem });
      opt.zeroGrad();
      backward(loss, undefined, { freeActivations: true });
      opt.step();
    });
  traffic(step);
  const t = traffic(step);
  model.eval();
  const forward = () => void model.forward(a, b);
  const infer = traffic(() => scope(() => (halfInfer ? halfInference(forward) : noGrad(forward))));
  for (const x of [a, b, l]) {
    x.kept = false;
    x.dispose();
  }
  return { ...t, infer };
}

/** Conv passes by kernel name (what bench/roofline.ts counts exactly). */
export const isConvKernel = (k: string) => /^conv|winograd|^col2im/.test(k);

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      models: { type: "string", default: "fc_siam_diff,snunet_c16" },
      batch: { type: "string", default: "8" },
      size: { type: "string", default: "512" },
      bw: { type: "string", default: "3.35" },
      top: { type: "string", default: "12" },
      "fused-wino4-max": { type: "string", default: "0" },
      "matmul-split-below": { type: "string" },
      "half-inference": { type: "boolean", default: false },
      winograd6: { type: "boolean", default: false },
    },
  });
  await initDevice();
  setActiveProfile({
    ...H100_PROFILE,
    fusedWino4MaxChannels: Number(values["fused-wino4-max"]),
    winograd6: values.winograd6,
    ...(values["matmul-split-below"]
      ? { matmulSplitBelowFill: Number(values["matmul-split-below"]) }
      : {}),
  });
  const bw = Number(values.bw) * 1e12, top = Number(values.top);
  const B = Number(values.batch), S = Number(values.size);
  const gb = (x: number) => (x / 1e9).toFixed(2), ms = (x: number) => (x / bw * 1e3).toFixed(2);
  console.log(
    `One dry training step at ${B} × ${S}² (H100 plans, fused F(4×4) up to ` +
      `${values["fused-wino4-max"]} channels${
        values.winograd6 ? ", F(6×6) where it fits" : ""
      }): bytes bound per kernel, ` +
      `floor at ${values.bw} TB/s\n`,
  );
  for (const name of values.models.split(",")) {
    const t = stepTraffic(name, B, S, values["half-inference"]);
    const rows = [...t.bytes];
    const total = rows.reduce((a, [, v]) => a + v, 0);
    const conv = rows.filter(([k]) => isConvKernel(k)).reduce((a, [, v]) => a + v, 0);
    const n = [...t.dispatches.values()].reduce((a, v) => a + v, 0);
    const inf = [...t.infer.bytes.values()].reduce((a, v) => a + v, 0);
    const nInf = [...t.infer.dispatches.values()].reduce((a, v) => a + v, 0);
    const rest = total - conv;
    console.log(
      `## ${name}: ${gb(total)} GB in ${n} dispatches (${ms(total)} ms); conv kernels ` +
        `${gb(conv)} GB (${ms(conv)} ms), the rest ${gb(rest)} GB (${ms(rest)} ms); ` +
        `inference ${gb(inf)} GB in ${nInf} dispatches (${ms(inf)} ms)\n`,
    );
    for (const [what, tr] of [["training step", t], ["inference", t.infer]] as const) {
      if (top <= 0) break;
      const sorted = [...tr.bytes].sort((x, y) => y[1] - x[1]).slice(0, top);
      console.log(`${what}:\n\n| kernel | dispatches | GB | ms at bandwidth |`);
      console.log("| --- | --- | --- | --- |");
      for (const [k, v] of sorted) {
        console.log(`| ${k} | ${tr.dispatches.get(k)} | ${gb(v)} | ${ms(v)} |`);
      }
      console.log("");
    }
  }
}
