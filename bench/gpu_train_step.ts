// Training step (forward, loss, backward, AdamW) and inference time of the registry's models at
// batch B of S×S pairs, on this engine; run beside bench/reference/train_step.py on the GPU
// machine. Usage: deno run -A bench/gpu_train_step.ts [--models tinycd,fc_siam_diff] [--batch 8]
// [--size 512] [--iters 10] [--profile] [--matmul-split-below 1] [--matmul-fill-exp 0.5]
// [--fused-wino4-max 64] [--shuffle-min-channels 32] [--tap-expand-max 32] [--matmul-small-tiles]
// [--half-inference] [--winograd6]
// --profile also prints GPU time per kernel label (and per label, grid and shape) of one training
// step and of one inference forward, each dispatch in its own timestamped pass, and the CPU time
// spent recording a step. --matmul-split-below F runs with the matmul planner splitting reductions
// of launches that fill less than F of the GPU (default: the device profile's 0.5), to compare;
// --matmul-fill-exp E charges a part-full launch work / fill^E (default the profile's 1);
// --fused-wino4-max C routes 3×3 convs of at most C channels each way to the fused Winograd
// F(4×4) kernel (default 0: never); --shuffle-min-channels C runs kernel = stride transposed
// convs of at least C channels each way as GEMMs + pixel shuffles (default the profile's 64:
// SNUNet's 32-channel up-convs at 512² take the input-gradient GEMM, 1.08 ms each forward on an
// H100 in session 18, where their bytes need ~0.1); --tap-expand-max C runs them (and patch convs'
// input gradients) of at most C channels each way on kernels/conv2d_tap_expand.ts (default 0);
// --matmul-small-tiles lets the matmul planner pick 16×16, 16×32 and 32×16 tiles (default off);
// --half-inference times inference with the Winograd F(4×4) operands V and P stored in f16
// (engine/precision.ts halfInference; ~3e-3 rms error per conv, tests/engine/half_storage_test.ts);
// --winograd6 lets the Winograd GEMM routes take F(6×6, 3×3) where its tiles fit the output
// (kernels/device_profile.ts winograd6; default off).

import { parseArgs } from "node:util";
import { backward, noGrad } from "../engine/autograd.ts";
import { deviceInfo, initDevice } from "../engine/device.ts";
import { AdamW } from "../engine/optim/adamw.ts";
import { pool } from "../engine/pool.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { tensor } from "../engine/tensor.ts";
import { modelEntry } from "../models/registry.ts";
import { trainingLoss } from "../train/loss.ts";
import { recipeMultipliers, trainableParameters } from "../train/trainer.ts";
import { Random } from "../engine/random.ts";
import { activeProfile, setActiveProfile } from "../kernels/device_profile.ts";
import { halfInference } from "../engine/precision.ts";
import { type KernelTime, startProfile, stopProfile } from "../engine/kernel_profile.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string", default: "tinycd,fc_siam_diff" },
    batch: { type: "string", default: "8" },
    size: { type: "string", default: "512" },
    iters: { type: "string", default: "10" },
    profile: { type: "boolean", default: false },
    "matmul-split-below": { type: "string" },
    "matmul-fill-exp": { type: "string" },
    "fused-wino4-max": { type: "string" },
    "shuffle-min-channels": { type: "string" },
    "tap-expand-max": { type: "string" },
    "matmul-small-tiles": { type: "boolean", default: false },
    "half-inference": { type: "boolean", default: false },
    winograd6: { type: "boolean", default: false },
  },
});
await initDevice();
// Planner experiments (kernels/device_profile.ts matmulSplitBelowFill, fusedWino4MaxChannels):
// the rows say which ran.
const splitBelow = values["matmul-split-below"], fusedMax = values["fused-wino4-max"];
const fillExp = values["matmul-fill-exp"], shuffleMin = values["shuffle-min-channels"];
const tapMax = values["tap-expand-max"], smallTiles = values["matmul-small-tiles"];
const halfInfer = values["half-inference"], wino6 = values.winograd6;
setActiveProfile({
  ...activeProfile(),
  ...(splitBelow !== undefined ? { matmulSplitBelowFill: Number(splitBelow) } : {}),
  ...(fusedMax !== undefined ? { fusedWino4MaxChannels: Number(fusedMax) } : {}),
  ...(fillExp !== undefined ? { matmulFillExponent: Number(fillExp) } : {}),
  ...(shuffleMin !== undefined ? { shuffleMinChannels: Number(shuffleMin) } : {}),
  ...(tapMax !== undefined ? { tapExpandMaxChannels: Number(tapMax) } : {}),
  ...(smallTiles ? { matmulSmallTiles: true } : {}),
  ...(wino6 ? { winograd6: true } : {}),
});
const B = Number(values.batch), S = Number(values.size), N = Number(values.iters);
const rng = new Random(0);
const a = rng.normal(B * 3 * S * S), b = rng.normal(B * 3 * S * S);
const label = Uint32Array.from({ length: B * S * S }, () => (rng.next() > 0.9 ? 1 : 0));
for (const name of values.models!.split(",")) {
  // Each model's own peaks (one process may step several: gpu_planner_ab.sh).
  pool.resetPeaks();
  const entry = modelEntry(name);
  const model = entry.create(0);
  // The model's recipe: its parameter groups and loss (OHEM, auxiliary heads, deep supervision,
  // STANet's BCL), as the trainer runs it.
  const opt = new AdamW(trainableParameters(model, entry), {
    lr: entry.recipe.lr,
    betas: entry.recipe.betas,
    weightDecay: entry.recipe.weightDecay,
    multipliers: recipeMultipliers(model, entry),
  });
  const ta = tensor(a, [B, 3, S, S]).keep(), tb = tensor(b, [B, 3, S, S]).keep();
  const tl = tensor(label, [B, S, S], "u32").keep();
  const step = () =>
    scope(() => {
      const loss = trainingLoss(model, model.forward(ta, tb), tl, {
        ohem: entry.recipe.loss?.ohem,
      });
      opt.zeroGrad();
      backward(loss, undefined, { freeActivations: true });
      opt.step();
    });
  // Two timed rounds, the second reported: on a freshly started machine the first round of a
  // model's inference ran at twice its later time (28 against 12 ms for FC-Siam-Diff on an
  // H200), after two warm-up calls.
  const time = async (fn: () => void) => {
    for (let i = 0; i < 2; i++) fn();
    await sync();
    let ms = 0;
    for (let round = 0; round < 2; round++) {
      const t0 = performance.now();
      for (let i = 0; i < N; i++) fn();
      await sync();
      ms = (performance.now() - t0) / N;
    }
    return ms;
  };
  model.train();
  const trainMs = await time(step);
  const peak = pool.peakLiveBytes, held = pool.peakBytes;
  // CPU cost of recording a step: with the GPU idle, the wall time of step() itself.
  await sync();
  let recordMs = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    step();
    recordMs = Math.min(recordMs, performance.now() - t0);
    await sync();
  }
  let profile: KernelTime[] = [];
  if (values.profile) {
    startProfile();
    step();
    await sync();
    profile = await stopProfile();
  }
  model.eval();
  const forward = () => void model.forward(ta, tb);
  const infer = () => scope(() => (halfInfer ? halfInference(forward) : noGrad(forward)));
  const inferMs = await time(infer);
  // The same for recording one inference forward.
  let inferRecordMs = Infinity;
  for (let i = 0; i < 3; i++) {
    await sync();
    const t0 = performance.now();
    infer();
    inferRecordMs = Math.min(inferRecordMs, performance.now() - t0);
  }
  let inferProfile: KernelTime[] = [];
  if (values.profile) {
    await sync();
    startProfile();
    infer();
    await sync();
    inferProfile = await stopProfile();
  }
  console.log(JSON.stringify({
    model: name,
    impl: "cd-engine",
    batch: B,
    size: S,
    train_ms: +trainMs.toFixed(2),
    infer_ms: +inferMs.toFixed(2),
    pairs_per_s_train: +(B / trainMs * 1000).toFixed(1),
    record_ms: +recordMs.toFixed(2),
    infer_record_ms: +inferRecordMs.toFixed(2),
    peak_pool_gb: +(peak / 1e9).toFixed(2),
    // What the device holds for the pool (free buffers included), the figure that runs out.
    held_pool_gb: +(held / 1e9).toFixed(2),
    device: deviceInfo().description,
    ...(splitBelow !== undefined ? { matmul_split_below: Number(splitBelow) } : {}),
    ...(fusedMax !== undefined ? { fused_wino4_max: Number(fusedMax) } : {}),
    ...(fillExp !== undefined ? { matmul_fill_exp: Number(fillExp) } : {}),
    ...(shuffleMin !== undefined ? { shuffle_min_channels: Number(shuffleMin) } : {}),
    ...(tapMax !== undefined ? { tap_expand_max: Number(tapMax) } : {}),
    ...(smallTiles ? { matmul_small_tiles: true } : {}),
    ...(halfInfer ? { half_inference: true } : {}),
    ...(wino6 ? { winograd6: true } : {}),
  }));
  if (profile.length) printProfile(name, profile);
  if (inferProfile.length) printProfile(`${name} inference`, inferProfile);
  for (const t of [ta, tb, tl]) {
    t.kept = false;
    t.dispose();
  }
  opt.dispose();
  opt.arena.dispose();
  pool.trim();
}

function printProfile(name: string, rows: KernelTime[]): void {
  const total = rows.reduce((s, r) => s + r.ms, 0);
  const calls = rows.reduce((s, r) => s + r.calls, 0);
  console.log(`# ${name}: ${calls} dispatches, ${total.toFixed(2)} ms GPU in one profiled step`);
  const byLabel = new Map<string, KernelTime>();
  for (const r of rows) {
    const label = r.label.split(" [")[0];
    const t = byLabel.get(label) ?? { label, calls: 0, ms: 0 };
    t.calls += r.calls;
    t.ms += r.ms;
    byLabel.set(label, t);
  }
  const show = (r: KernelTime) =>
    console.log(
      `#   ${r.ms.toFixed(3).padStart(9)} ms ${String(r.calls).padStart(5)}×  ${r.label}`,
    );
  console.log("# by kernel:");
  [...byLabel.values()].sort((a, b) => b.ms - a.ms).slice(0, 30).forEach(show);
  console.log("# by kernel and grid:");
  rows.slice(0, 40).forEach(show);
}
