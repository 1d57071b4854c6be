// Where a training step's peak memory goes: the pool's live buffers at the step's peak, grouped
// by the source lines (model, loss and op frames) that allocated them. Memory follows the
// kernel routes, and those follow the device profile, so the planners run with the H100's
// (--device h100, the default) on any adapter: a small batch on the software adapter then
// scales to the GPU's 8 × 512² (the figure printed beside it; at 1 × 128², TinyCD 17.21 GB and
// FC-Siam-Diff 5.53, against 17.2 and 5.4 measured on an H100; below 128² the plans change)
// and shows what to recompute instead of keeping.
// --dry records no kernel at all (engine/profiler.ts's dry count: shapes flow, buffers are taken
// and given back as in a real step), so the step runs at the GPU's own batch and size on the
// software adapter in seconds, and the peak is the pool's at 8 × 512² itself, chunked launches
// (Winograd's images per chunk) as the H100 plans them, not a small run scaled up. The printed
// peak is the pool's live bytes (size classes, as bench/gpu_train_step.ts's peak_pool_gb);
// parameters, inputs and optimiser state included. On session 13's code it gave FC-EF 3.91,
// FC-Siam-Conc 5.30 and FC-Siam-Diff 5.35 GB at 8 × 512², the H100's measured figures to the
// hundredth (1 × 128² scaled: 4.10, 6.05, 5.53: at a small batch the Winograd chunks and the
// split-K partials are not the GPU's).
// It also counts what eviction costs (Tensor.evict): the tensors written again in
// the backward, their bytes and so the extra traffic; --keep turns eviction off (the keep path).
// Usage: deno run -A bench/peak_breakdown.ts [--model tinycd] [--batch 1] [--size 128]
// [--top 30] [--frames 3] [--device h100|own] [--keep] [--dry] [--rules 0]
// --rules N lists the N backward rules during which the most bytes were live (scaled).

import { parseArgs } from "node:util";
import { backward } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { AdamW } from "../engine/optim/adamw.ts";
import { pool, sizeClass } from "../engine/pool.ts";
import { Random } from "../engine/random.ts";
import { sync } from "../engine/recorder.ts";
import { countMacs } from "../engine/profiler.ts";
import { scope } from "../engine/scope.ts";
import { recomputeStats, setEviction, type Tensor, tensor } from "../engine/tensor.ts";
import { modelEntry } from "../models/registry.ts";
import { trainingLoss } from "../train/loss.ts";
import { H100_PROFILE, setActiveProfile } from "../kernels/device_profile.ts";
import { recipeMultipliers, trainableParameters } from "../train/trainer.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "tinycd" },
    batch: { type: "string", default: "1" },
    size: { type: "string", default: "128" },
    top: { type: "string", default: "30" },
    device: { type: "string", default: "h100" },
    keep: { type: "boolean", default: false },
    dry: { type: "boolean", default: false },
    rules: { type: "string", default: "0" },
    frames: { type: "string", default: "3" },
  },
});
if (values.keep) setEviction(false);
await initDevice();
if (values.device === "h100") setActiveProfile(H100_PROFILE);
const B = Number(values.batch), S = Number(values.size), FRAMES = Number(values.frames);

interface Held {
  size: number;
  where: string;
}
const live = new Map<GPUBuffer, Held>();
let current = 0, peak = 0, atPeak: Held[] = [];
/** The step's phase, and the live bytes when the forward (with the loss) ended. */
let phase = "forward", peakPhase = phase, forwardEnd = 0;
/** The backward rule running: its op, its output's shape and its place in the backward's order. */
let rule = "", peakRule = "";
/** The most bytes live while each backward rule ran (--rules lists the highest). */
const ruleMax = new Map<string, number>();
/** The allocating call's model, loss and op frames (the pool's and tensor.ts's skipped), the
 * first --frames of them. */
function where(): string {
  const frames = (new Error().stack ?? "").split("\n").slice(3)
    .filter((l) => /models\/|train\/loss|engine\/ops\//.test(l)).slice(0, FRAMES)
    .map((l) => l.replace(/^.*?((models|train|engine)\/[^)]*)\)?$/, "$1").trim());
  return frames.join(" < ") || "(outside the model)";
}
const acquire = pool.acquire.bind(pool), release = pool.release.bind(pool);
pool.acquire = (bytes: number, label?: string) => {
  const buf = acquire(bytes, label);
  // The request's class, as the pool counts live bytes (a larger free buffer may serve it).
  const size = sizeClass(bytes);
  live.set(buf, { size, where: where() });
  current += size;
  if (rule) ruleMax.set(rule, Math.max(ruleMax.get(rule) ?? 0, current));
  if (current > peak) {
    [peak, atPeak, peakPhase, peakRule] = [current, [...live.values()], phase, rule];
  }
  return buf;
};
pool.release = (buf: GPUBuffer) => {
  const held = live.get(buf);
  if (held) {
    current -= held.size;
    live.delete(buf);
  }
  release(buf);
};

const entry = modelEntry(values.model!);
const model = entry.create(0);
const opt = new AdamW(trainableParameters(model, entry), {
  lr: entry.recipe.lr,
  multipliers: recipeMultipliers(model, entry),
});
const rng = new Random(0);
const ta = tensor(rng.normal(B * 3 * S * S), [B, 3, S, S]).keep();
const tb = tensor(rng.normal(B * 3 * S * S), [B, 3, S, S]).keep();
const label = Uint32Array.from({ length: B * S * S }, () => (rng.next() > 0.9 ? 1 : 0));
const tl = tensor(label, [B, S, S], "u32").keep();
model.train();
/** Name each backward rule while it runs: its op and how many rules ran before it. */
function labelRules(root: Tensor): void {
  const seen = new Set<Tensor>();
  const stack = [root];
  let ran = 0;
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t) || !t.node) continue;
    seen.add(t);
    const node = t.node, inner = node.backward;
    const shape = `[${t.shape.join(", ")}]`;
    node.backward = (g, into) => {
      rule = `${node.name} ${shape} (rule ${++ran} of the backward)`;
      try {
        return inner(g, into);
      } finally {
        rule = "";
      }
    };
    stack.push(...node.inputs);
  }
}
const oneStep = () =>
  scope(() => {
    const loss = trainingLoss(model, model.forward(ta, tb), tl, {
      ohem: entry.recipe.loss?.ohem,
    });
    opt.zeroGrad();
    [phase, forwardEnd] = ["backward", current];
    labelRules(loss);
    backward(loss, undefined, { freeActivations: true });
    phase = "optimiser";
    opt.step();
  });
const step = () => values.dry ? void countMacs(oneStep, { dry: true }) : oneStep();
// The second step's peak: the first one also creates the optimizer state.
step();
await sync();
[peak, atPeak, phase] = [0, [], "forward"];
ruleMax.clear();
const before = { ...recomputeStats };
step();
await sync();
const scale = values.dry ? 1 : (8 * 512 * 512) / (B * S * S);
console.log(
  values.dry
    ? `${values.model}: peak ${(peak / 1e9).toFixed(3)} GB at batch ${B} × ${S}² (dry: no kernel ` +
      "recorded, every buffer taken and given back as in the step)"
    : `${values.model}: peak ${(peak / 1e6).toFixed(1)} MB at batch ${B} × ${S}² ` +
      `(× ${scale.toFixed(0)}: ${(peak * scale / 1e9).toFixed(2)} GB at 8 × 512², parameter ` +
      "arenas included unscaled)",
);
console.log(
  `peak in the ${peakPhase}${peakRule ? ", in " + peakRule : ""}; ` +
    `${(forwardEnd / 1e6).toFixed(1)} MB live when the forward ended ` +
    `(${(forwardEnd * scale / 1e9).toFixed(2)} GB scaled)`,
);
// The pool keeps what it ever created (free buffers wait for requests of their size class):
// what the device holds is this, not the live peak.
console.log(
  `held by the pool: ${(pool.peakBytes * scale / 1e9).toFixed(2)} GB at most ` +
    `(${(pool.peakBytes / peak).toFixed(2)} × the live peak)`,
);
const recomputes = recomputeStats.recomputes - before.recomputes;
const written = recomputeStats.recomputedBytes - before.recomputedBytes;
// A recompute reads an input of its output's size (the conv output, the SE factor; the
// per-channel statistics and gates are negligible) and writes the output: twice its bytes.
const gb = (bytes: number) => (bytes * scale / 1e9).toFixed(2);
console.log(
  `eviction: ${recomputeStats.evictions - before.evictions} tensors evicted, ${recomputes} ` +
    `written again (${recomputes} extra dispatches), ${(written / 1e6).toFixed(1)} MB written ` +
    `(${gb(written)} GB scaled, ~${gb(2 * written)} GB moved)`,
);
const by = new Map<string, number>();
for (const h of atPeak) by.set(h.where, (by.get(h.where) ?? 0) + h.size);
for (const [w, s] of [...by].sort((x, y) => y[1] - x[1]).slice(0, Number(values.top))) {
  console.log(
    `${(s / 1e6).toFixed(2).padStart(9)} MB  ${(100 * s / peak).toFixed(1).padStart(5)} %  ${w}`,
  );
}
if (Number(values.rules) > 0) {
  console.log("backward rules with the most bytes live while they ran:");
  for (const [r, s] of [...ruleMax].sort((x, y) => y[1] - x[1]).slice(0, Number(values.rules))) {
    console.log(`${(s * scale / 1e9).toFixed(3).padStart(9)} GB  ${r}`);
  }
}
