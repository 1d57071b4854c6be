// Step-by-step training parity on the CPU (issue 22), engine side: loads the initial weights and
// batches that bench/reference/step_parity.py wrote, replays the same AdamW steps (same LR per
// step; dropout off, or with --engine-dropout there the engine's own masks on both sides) and
// compares every step's loss, the final weights and the eval-mode log-probabilities of the first
// batch (on PyTorch's final weights and running statistics) with PyTorch's.
//   python3 bench/reference/step_parity.py --model fc_siam_diff --out DIR
//   deno run -A bench/step_parity.ts DIR
// Agreement to ~1e-4 relative over 20 steps means the arithmetic, BatchNorm (train and eval) and
// the optimiser match, so a remaining gap in training lies in data or regularisation. Adam's first
// steps are nearly sign(g)·lr, so float32 rounding grows: the last column is PyTorch's own
// float32 against float64 drift over the same steps, the yardstick for the engine's.

import { backward, noGrad } from "../engine/autograd.ts";
import { initDevice, releaseDevice } from "../engine/device.ts";
import { Dropout2d, resetDropoutStream } from "../engine/nn/dropout.ts";
import { cdLoss } from "../engine/ops/cd_loss.ts";
import { logSoftmax } from "../engine/ops/softmax.ts";
import { AdamW } from "../engine/optim/adamw.ts";
import { loadInto, readSafetensors, type SafeEntry } from "../engine/safetensors.ts";
import { scope } from "../engine/scope.ts";
import { tensor } from "../engine/tensor.ts";
import { modelEntry } from "../models/registry.ts";

const dir = Deno.args[0];
if (!dir) throw new Error("usage: deno run -A bench/step_parity.ts DIR (from step_parity.py)");
const ref = JSON.parse(Deno.readTextFileSync(`${dir}/torch.json`));
await initDevice();
if (ref.dropout !== "engine") {
  // The PyTorch run set every Dropout2d's p to 0; do the same here (masks cannot match).
  Dropout2d.prototype.nextMask = () => ({ p: 0, training: false, seed: 0 });
  Dropout2d.prototype.forward = function (x) {
    return x;
  };
}
const entry = modelEntry(ref.model);
const model = entry.create(ref.seed);
/** The engine's names for a file's tensors: cd_models.py's SNUNet lacks Open-CD's
 * backbone./decode_head. prefixes. */
function engineNamed(file: string): Map<string, SafeEntry> {
  const entries = readSafetensors(file);
  const out = new Map<string, SafeEntry>();
  for (const name of model.stateDict().keys()) {
    const e = entries.get(name) ?? entries.get(name.replace(/^(backbone|neck|decode_head)\./, ""));
    if (e) out.set(name, e);
  }
  for (const [k, e] of entries) if (k.startsWith("__")) out.set(k, e);
  return out;
}
loadInto(model.stateDict(), engineNamed(`${dir}/init.safetensors`));
const data = readSafetensors(`${dir}/batches.safetensors`);
const shape = [ref.batch, 3, ref.size, ref.size];
const input = (i: number) => ({
  a: tensor(Float32Array.from(data.get(`a${i}`)!.data as ArrayLike<number>), shape),
  b: tensor(Float32Array.from(data.get(`b${i}`)!.data as ArrayLike<number>), shape),
  y: tensor(Uint32Array.from(data.get(`y${i}`)!.data as ArrayLike<number>), [
    ref.batch,
    ref.size,
    ref.size,
  ], "u32"),
});
const opt = new AdamW(model.parameters(), {
  lr: ref.lrs[0],
  betas: ref.betas,
  weightDecay: ref.weight_decay,
});
model.train();
const losses: number[] = [];
for (let step = 0; step < ref.steps; step++) {
  const loss = scope(() => {
    const { a, b, y } = input(step);
    // The trainer's mask stream (step_parity.py --engine-dropout draws the same masks).
    resetDropoutStream(ref.seed, step);
    const { loss } = cdLoss(model.forward(a, b), y);
    opt.zeroGrad();
    backward(loss, undefined, { freeActivations: true });
    opt.step(ref.lrs[step]);
    return loss;
  });
  losses.push(await loss.item());
  loss.dispose();
}
let worstLoss = 0;
let worstDrift = 0;
console.log("step  engine      pytorch     rel.diff  (pytorch f32 vs f64)");
losses.forEach((l, i) => {
  const t = ref.losses[i], rel = Math.abs(l - t) / Math.abs(t);
  const t64 = ref.losses_f64[i], drift = Math.abs(t - t64) / Math.abs(t64);
  worstLoss = Math.max(worstLoss, rel);
  worstDrift = Math.max(worstDrift, drift);
  console.log(
    `${String(i).padStart(4)}  ${l.toFixed(6)}  ${t.toFixed(6)}  ${rel.toExponential(2)}  (${
      drift.toExponential(2)
    })`,
  );
});
const fin = engineNamed(`${dir}/final.safetensors`);
// Parameters: the largest absolute difference (a BN bias starts at 0, so a relative one would
// blow up on sign flips of tiny values); running statistics: relative to the tensor's largest.
let worstParam = { name: "", abs: 0 }, worstStat = { name: "", rel: 0 };
for (const [name, t] of model.stateDict()) {
  if (name.endsWith("num_batches_tracked")) continue;
  const ours = await t.read(), theirs = fin.get(name)!.data as ArrayLike<number>;
  let num = 0, den = 0;
  for (let i = 0; i < ours.length; i++) {
    num = Math.max(num, Math.abs(ours[i] - theirs[i]));
    den = Math.max(den, Math.abs(theirs[i]));
  }
  if (/running_(mean|var)$/.test(name)) {
    const rel = num / Math.max(den, 1e-6);
    if (rel > worstStat.rel) worstStat = { name, rel };
  } else if (num > worstParam.abs) worstParam = { name, abs: num };
}
// Eval mode on PyTorch's own final weights and running statistics: the eval path (BN folded)
// alone, free of the steps' rounding drift.
const evalLogp = fin.get("__eval_logp")!;
fin.delete("__eval_logp");
loadInto(model.stateDict(), fin);
fin.set("__eval_logp", evalLogp);
model.eval();
const logp = scope(() =>
  noGrad(() => {
    const { a, b } = input(0);
    return logSoftmax(model.forward(a, b), 1);
  })
);
const ours = await logp.read(), theirs = fin.get("__eval_logp")!.data as ArrayLike<number>;
let evalDiff = 0;
for (let i = 0; i < ours.length; i++) evalDiff = Math.max(evalDiff, Math.abs(ours[i] - theirs[i]));
console.log(JSON.stringify({
  model: ref.model,
  steps: ref.steps,
  worstLossRel: worstLoss,
  torchF32VsF64: worstDrift,
  worstParamAbs: worstParam,
  worstRunningStatRel: worstStat,
  evalLogpMaxAbs: evalDiff,
}));
releaseDevice();
