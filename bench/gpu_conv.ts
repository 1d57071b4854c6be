// Convolution kernels at the real layer shapes of TinyCD and FC-Siam-diff (batch 8, 512×512
// input; bench/gpu_conv_layers.ts), beside PyTorch/cuDNN: forward, gradient w.r.t. the input (dgrad) and w.r.t. the weight
// (wgrad) of every distinct layer shape. Inputs are filled on the GPU from an integer hash of the
// element index, so sampled outputs can be checked at full size against float64 sums on the CPU
// without uploading anything. Each case records n launches between two GPU timestamps (n chosen
// so a sample lasts ~TARGET_MS), median of SAMPLES. Each row times the route the conv op takes
// for that shape without an activation (the matmul op for plain 1×1 convs, the small 1×1 kernels,
// GEMMs + shuffles for kernel = stride transposed convs); another route, where one exists, follows
// as a "(conv kernels)" or "(matmul op)" row, which the cuDNN summary leaves out.
//
// Usage on the GPU machine (one command, so both sides run on the same card):
//   deno run -A bench/gpu_conv.ts --list > layers.json
//   python3 bench/reference/conv.py layers.json > torch.json
//   deno run -A bench/gpu_conv.ts --torch torch.json [--sweep [--sweep-op wgrad]] [--only SUBSTRING]
//     [--warmup-ms 3000]
// `--small` shrinks batch and image (÷16) for a smoke run on the software adapter.
// `--sweep` also times alternative tiles of the GEMM kernels and strip widths of the direct
// ones, and prints the fastest per case (how the kernels' pickers were tuned;
// bench/gpu_conv_sweep.ts). Data, checks and timing: bench/gpu_conv_measure.ts.

import { deviceInfo, initDevice } from "../engine/device.ts";
import {
  convForwardRaw,
  convInputGradRaw,
  convWeightGradRaw,
  kernelWeightGradRaw,
} from "../engine/ops/conv2d_launch.ts";
import {
  shuffleForwardRaw,
  shuffleInputGradRaw,
  shuffleWeightGradRaw,
  unshuffled,
} from "../engine/ops/conv_transpose2d.ts";
import { gemm } from "../engine/ops/matmul.ts";
import { pool } from "../engine/pool.ts";
import { type Tensor, view } from "../engine/tensor.ts";
import { type ConvGeometry, convGeometry, NO_EPILOGUE } from "../kernels/conv2d.ts";
import { convTransposeGeometry } from "../kernels/conv_transpose2d.ts";
import {
  type ConvRoute,
  forwardIsDirect,
  matmul1x1Fits,
  planDgrad,
  planForward,
  planWgrad,
  planWgradKernels,
  shuffleTransposeFits,
  small1x1Fits,
} from "../kernels/conv_plan.ts";
import { type Layer, LAYERS, SMALL } from "./gpu_conv_layers.ts";
import {
  type Data,
  dgradSampler,
  filled,
  forwardSampler,
  measure,
  type Sampler,
  warmUp,
  wgradSampler,
} from "./gpu_conv_measure.ts";
import {
  dgradVariants,
  forwardVariants,
  sweep,
  sweepRows,
  wgradVariants,
} from "./gpu_conv_sweep.ts";

const args = Deno.args;
const SWEEP = args.includes("--sweep");
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
/** `--sweep-op wgrad` (or fwd, dgrad) sweeps that computation only. */
const SWEEP_OP = arg("--sweep-op");
const sweepOp = (op: string) => !SWEEP_OP || SWEEP_OP === op;
/** Sustained load before the first measurement (`--warmup-ms`). */
const WARMUP_MS = Number(arg("--warmup-ms") ?? 3000);

if (args.includes("--list")) {
  console.log(JSON.stringify(LAYERS));
  Deno.exit(0);
}

await initDevice();
const torchPath = arg("--torch");
const torch: { device?: string; results?: Record<string, number> } = torchPath
  ? JSON.parse(await Deno.readTextFile(torchPath).catch(() => "{}"))
  : {};

// ---------------------------------------------------------------- run

interface Row {
  key: string;
  what: string;
  op: string;
  ms: number;
  err: number;
  gflop: number;
  path: string;
}
const rows: Row[] = [];

/** Short names of the planner's routes (kernels/conv_plan.ts) for the report's path column. */
const PATH: Record<string, string> = {
  "small1x1-mix": "small",
  "small1x1-wgrad": "small",
  "winograd-f2": "winograd",
  "winograd-f2-flip": "winograd",
  "winograd-f4": "wino4",
  "winograd-f4-gemm": "wino4",
  "winograd-f4-gemm-flip": "wino4",
  "winograd-f4-fused": "wino4-fused",
  "winograd-f4-fused-flip": "wino4-fused",
  "col2im": "col2im",
  "direct": "direct",
  "gemm": "gemm",
  "gemm-dgrad": "gemm",
  "gemm-splitk": "gemm",
};
const pathName = (r: ConvRoute) => PATH[r.kind] ?? r.kind;

type Case = [op: string, launch: () => Tensor, check: Sampler, path: string];

/** The path the conv kernels take for one computation (the planner's route, small 1×1
 * kernels included). */
function opPath(g: ConvGeometry, op: string): string {
  return pathName(
    op === "fwd" ? planForward(g) : op === "dgrad" ? planDgrad(g) : planWgrad(g, false),
  );
}

/** Time one computation of a layer into a row; `alt` (a key suffix) marks a comparison row. */
async function timeRow(layer: Layer, c: Case, flop: number, alt: "" | "conv" | "matmul") {
  const [op, launch, check, path] = c;
  // The transposed conv's own names for the two data passes.
  const name = layer.transposed ? { fwd: "dgrad", dgrad: "fwd", wgrad: "wgrad" }[op]! : op;
  const label = { "": "", conv: " (conv kernels)", matmul: " (matmul op)" }[alt];
  const r = await measure(launch, check);
  rows.push({
    key: `${layer.key}_${name}${alt ? `_${alt}` : ""}`,
    what: `${layer.what} ${name}${label}`,
    op: name,
    ...r,
    gflop: flop / 1e9,
    path,
  });
  console.log(
    `${layer.key} ${name}${label}: ${r.ms.toFixed(4)} ms (${path}), err ${r.err.toExponential(1)}`,
  );
}

/** A 1×1 conv through the matmul op's GEMMs (its forward and its backward's two products). */
function matmulCases(g: ConvGeometry, x: Data, dy: Data, w: Data): Case[] {
  const hw = g.h * g.w;
  return [
    [
      "fwd",
      () => gemm(view(w.t, [g.co, g.ci]), view(x.t, [g.batch, g.ci, hw])),
      forwardSampler(g, x, w),
      "matmul",
    ],
    [
      "dgrad",
      () => gemm(view(w.t, [g.co, g.ci]), view(dy.t, [g.batch, g.co, hw]), { transA: true }),
      dgradSampler(g, dy, w),
      "matmul",
    ],
    [
      "wgrad",
      () =>
        gemm(view(dy.t, [g.batch, g.co, hw]), view(x.t, [g.batch, g.ci, hw]), {
          transB: true,
          batchShape: [],
        }),
      wgradSampler(g, x, dy),
      "matmul",
    ],
  ];
}

/** Kernel = stride transposed convs (engine/ops/conv_transpose2d.ts): GEMMs and pixel shuffles;
 * the gradient's unshuffle is timed with each of the two passes that share it in the op. */
function shuffleCases(g: ConvGeometry, x: Data, dy: Data, w: Data): Case[] {
  return [
    [
      "fwd",
      () => {
        const u = unshuffled(g, x.t);
        const gx = shuffleInputGradRaw(g, u, w.t);
        u.dispose();
        return gx;
      },
      forwardSampler(g, x, w),
      "shuffle",
    ],
    [
      "dgrad",
      () => shuffleForwardRaw(g, dy.t, w.t, NO_EPILOGUE).y,
      dgradSampler(g, dy, w),
      "shuffle",
    ],
    [
      "wgrad",
      () => {
        const u = unshuffled(g, x.t);
        const dw = shuffleWeightGradRaw(g, dy.t, u);
        u.dispose();
        return dw;
      },
      wgradSampler(g, x, dy),
      "shuffle",
    ],
  ];
}

// An idle GPU starts at a low clock and raises it under sustained load: without this, the first
// layers of a run measured up to 2× slower than the same kernels later in the run.
if (!SMALL) await warmUp(WARMUP_MS);

for (const layer of LAYERS) {
  const opts = {
    stride: layer.stride,
    padding: layer.padding,
    outputPadding: layer.outputPadding,
    groups: layer.groups,
  };
  // Everything in conv terms: a transposed conv's forward is the conv's dgrad, and its dgrad
  // the conv's forward.
  const g = layer.transposed
    ? convTransposeGeometry(layer.x, layer.w, opts)
    : convGeometry(layer.x, layer.w, opts);
  const x = filled([g.batch, g.ci, g.h, g.w], 1, 1);
  const dy = filled([g.batch, g.co, g.ho, g.wo], 2, 1);
  const w = filled([g.co, g.ci / g.groups, g.kh, g.kw], 3, 0.125);
  const flop = 2 * g.batch * g.co * g.ho * g.wo * (g.ci / g.groups) * g.kh * g.kw;
  // Each computation on the conv ops' kernels (conv terms).
  let cases: Case[] = [
    ["fwd", () => convForwardRaw(g, x.t, w.t).y, forwardSampler(g, x, w), opPath(g, "fwd")],
    ["dgrad", () => convInputGradRaw(g, dy.t, w.t).y, dgradSampler(g, dy, w), opPath(g, "dgrad")],
    [
      "wgrad",
      () => convWeightGradRaw(g, x.t, dy.t, false).dw,
      wgradSampler(g, x, dy),
      opPath(g, "wgrad"),
    ],
  ];
  // Where the op takes another route for this shape, that route gives the row (the one compared
  // with cuDNN) and the conv kernels follow as "(conv kernels)" rows.
  let alt: Case[] = [];
  if (layer.transposed && shuffleTransposeFits(g)) {
    alt = cases;
    cases = shuffleCases(g, x, dy, w);
  }
  // 1×1 convs (stride 1, groups 1) are a plain GEMM: the conv op gives them to the matmul op
  // (with no activation, ReLU, sigmoid, or SiLU in inference) unless the direct or the small
  // 1×1 kernels take them or they have at most 1152 weights (matmul1x1Fits); where it does not
  // take them the matmul op stays as a comparison row.
  const is1x1 = !layer.transposed && g.kh === 1 && g.kw === 1 && g.groups === 1 &&
    g.strideY === 1 && !forwardIsDirect(g);
  const mm = is1x1 ? matmulCases(g, x, dy, w) : [];
  if (is1x1 && matmul1x1Fits(g)) {
    alt = cases;
    cases = mm;
  }
  // 1×1 convs with 257–1152 weights: the small kernel takes only their weight gradient; the
  // conv kernels' split-K GEMM it replaced follows as a "(conv kernels)" row.
  if (alt.length === 0 && !small1x1Fits(g) && opPath(g, "wgrad") === "small") {
    alt = [[
      "wgrad",
      () => kernelWeightGradRaw(g, x.t, dy.t, false).dw,
      wgradSampler(g, x, dy),
      pathName(planWgradKernels(g, false)),
    ]];
  }
  for (const c of cases) await timeRow(layer, c, flop, "");
  for (const c of alt) await timeRow(layer, c, flop, "conv");
  if (is1x1 && !matmul1x1Fits(g)) { for (const c of mm) await timeRow(layer, c, flop, "matmul"); }
  if (SWEEP) {
    if (sweepOp("fwd")) {
      await sweep(layer.key, "fwd", forwardVariants(g, x.t, w.t), forwardSampler(g, x, w));
    }
    if (sweepOp("dgrad")) {
      await sweep(layer.key, "dgrad", dgradVariants(g, dy.t, w.t), dgradSampler(g, dy, w));
    }
    if (sweepOp("wgrad")) {
      await sweep(layer.key, "wgrad", wgradVariants(g, x.t, dy.t), wgradSampler(g, x, dy));
    }
  }
  for (const d of [x, dy, w]) d.t.dispose();
  pool.trim();
}

// ---------------------------------------------------------------- report

const card = deviceInfo().description;
const pad = (s: string, n: number) => s.padEnd(n);
console.log(`\nWebGPU adapter: ${card}; PyTorch: ${torch.device ?? "no reference JSON"}`);
console.log("ms per launch (GPU timestamps); ratio = ours / cuDNN (< 1: faster than cuDNN)\n");
console.log(
  `${pad("case", 46)} ${pad("path", 7)} ${pad("ours", 9)} ${pad("TFLOP/s", 8)} ${pad("cuDNN", 9)} ${
    pad("ratio", 7)
  } ${pad("cuDNN tf32", 10)} ${pad("ratio", 7)} err`,
);
let worst = 0;
const misses: string[] = [];
for (const r of rows) {
  // Comparison rows (another route than the op's) share the op row's reference.
  const base = r.key.replace(/_(matmul|conv)$/, "");
  const t = torch.results?.[base];
  const t32 = torch.results?.[base + "_tf32"];
  const ratio = t ? r.ms / t : NaN;
  if (base === r.key && t) {
    worst = Math.max(worst, ratio);
    if (ratio > 1.5) misses.push(`${r.key} ${ratio.toFixed(2)}`);
  }
  console.log(
    `${pad(r.what, 46)} ${pad(r.path, 7)} ${pad(r.ms.toFixed(4), 9)} ${
      pad((r.gflop / r.ms).toFixed(2), 8)
    } ${pad(t?.toFixed(4) ?? "-", 9)} ${pad(t ? ratio.toFixed(2) : "-", 7)} ${
      pad(t32?.toFixed(4) ?? "-", 10)
    } ${pad(t32 ? (r.ms / t32).toFixed(2) : "-", 7)} ${r.err.toExponential(1)}${
      r.err > 1e-3 ? "  <-- CHECK FAILED" : ""
    }`,
  );
}
if (torch.results) {
  console.log(
    `\nworst ratio vs cuDNN (TF32 off): ${worst.toFixed(2)}; over 1.5×: ${
      misses.join(", ") || "none"
    }`,
  );
}
console.log(JSON.stringify({ adapter: card, torch: torch.device, rows, sweep: sweepRows }));
