// Convolution kernels at the real layer shapes of TinyCD and FC-Siam-diff (batch 8, 512×512
// input), beside PyTorch/cuDNN: forward, gradient w.r.t. the input (dgrad) and w.r.t. the weight
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
// ones, and prints the fastest per case (how the kernels' pickers were tuned).

import { deviceInfo, hasFeature, initDevice } from "../engine/device.ts";
import { GpuClock } from "../engine/gpu_clock.ts";
import { run } from "../engine/launch.ts";
import {
  col2imFits,
  convForwardRaw,
  convInputGradRaw,
  convWeightGradRaw,
  kernelWeightGradRaw,
  matmul1x1Fits,
  packWeights,
  runCol2im,
  runImplicitGemm,
  runWinograd,
  winogradWeightGradRaw,
  winogradWgradFits,
} from "../engine/ops/conv2d.ts";
import {
  shuffleForwardRaw,
  shuffleInputGradRaw,
  shuffleTransposeFits,
  shuffleWeightGradRaw,
  unshuffled,
} from "../engine/ops/conv_transpose2d.ts";
import {
  small1x1Fits,
  small1x1WeightGradRaw,
  smallWgradFits,
} from "../engine/ops/conv1x1_small.ts";
import { gemm } from "../engine/ops/matmul.ts";
import { TILE_LARGE, type TileConfig } from "../kernels/matmul.ts";
import { pool } from "../engine/pool.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { empty, type Tensor, view } from "../engine/tensor.ts";
import {
  dgradWinogradSpec,
  forwardWinogradSpec,
  winogradFits,
  winogradFitsDgrad,
  type WinogradSpec,
} from "../kernels/conv2d_winograd.ts";
import { grid1d, type Kernel } from "../kernels/common.ts";
import {
  type ConvGeometry,
  convGeometry,
  dgradIsDirect,
  forwardIsDirect,
  NO_EPILOGUE,
  wgradIsDirect,
} from "../kernels/conv2d.ts";
import { directConvKernel } from "../kernels/conv2d_direct.ts";
import { implicitGemmKernel, tapMajorFits } from "../kernels/conv2d_gemm.ts";
import {
  dgradGemmSpecs,
  forwardGemmSpec,
  GEMM_TILES,
  type GemmTile,
} from "../kernels/conv2d_gemm_plan.ts";
import {
  pickSplits,
  splitReduceKernel,
  wgradColumns,
  wgradGemmKernel,
  type WgradTile,
} from "../kernels/conv2d_wgrad.ts";
import { convTransposeGeometry } from "../kernels/conv_transpose2d.ts";

const args = Deno.args;
const SMALL = args.includes("--small");
const SWEEP = args.includes("--sweep");
const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const ONLY = arg("--only");
/** `--sweep-op wgrad` (or fwd, dgrad) sweeps that computation only. */
const SWEEP_OP = arg("--sweep-op");
const sweepOp = (op: string) => !SWEEP_OP || SWEEP_OP === op;
const TARGET_MS = SMALL ? 5 : 25;
const SAMPLES = SMALL ? 2 : 5;
/** Sustained load before the first measurement (`--warmup-ms`). */
const WARMUP_MS = Number(arg("--warmup-ms") ?? 3000);

// ---------------------------------------------------------------- layers

export interface Layer {
  key: string;
  what: string;
  transposed: boolean;
  x: number[];
  w: number[];
  stride: number;
  padding: number;
  outputPadding: number;
  groups: number;
}

const B = SMALL ? 1 : 8;
const S = (px: number) => (SMALL ? px / 16 : px);

function conv(
  key: string,
  what: string,
  ci: number,
  co: number,
  k: number,
  px: number,
  o: { stride?: number; groups?: number } = {},
): Layer {
  const groups = o.groups ?? 1;
  return {
    key,
    what,
    transposed: false,
    x: [B, ci, S(px), S(px)],
    w: [co, ci / groups, k, k],
    stride: o.stride ?? 1,
    padding: (k - 1) >> 1,
    outputPadding: 0,
    groups,
  };
}

function convT(
  key: string,
  what: string,
  ci: number,
  co: number,
  k: number,
  px: number,
  stride: number,
): Layer {
  const [padding, outputPadding] = k === 3 ? [1, stride - 1] : [0, 0];
  return {
    key,
    what,
    transposed: true,
    x: [B, ci, S(px), S(px)],
    w: [ci, co, k, k],
    stride,
    padding,
    outputPadding,
    groups: 1,
  };
}

// Distinct layer shapes (px = input size of the layer). TinyCD: EfficientNet-b4 features[0..3]
// (stem, MBConv expand / depthwise / project), the mixing convs (groups = Co on interleaved
// pairs), the up-blocks and the classifier. FC-Siam-diff: encoder 3×3 convs, decoder transposed
// convs (k3 s2 p1 op1 upsampling, k3 s1 p1). SNUNet: the k2 s2 up-convs.
export const LAYERS: Layer[] = [
  conv("tcd_stem", "TinyCD stem 3→48 k3 s2 @512", 3, 48, 3, 512, { stride: 2 }),
  conv("tcd_dw48", "TinyCD dw 48 k3 @256", 48, 48, 3, 256, { groups: 48 }),
  conv("tcd_pw48_24", "TinyCD 1×1 48→24 @256", 48, 24, 1, 256),
  conv("tcd_dw24", "TinyCD dw 24 k3 @256", 24, 24, 3, 256, { groups: 24 }),
  conv("tcd_pw24_24", "TinyCD 1×1 24→24 @256", 24, 24, 1, 256),
  conv("tcd_pw24_144", "TinyCD 1×1 24→144 @256", 24, 144, 1, 256),
  conv("tcd_dw144s2", "TinyCD dw 144 k3 s2 @256", 144, 144, 3, 256, { groups: 144, stride: 2 }),
  conv("tcd_pw144_32", "TinyCD 1×1 144→32 @128", 144, 32, 1, 128),
  conv("tcd_pw32_192", "TinyCD 1×1 32→192 @128", 32, 192, 1, 128),
  conv("tcd_dw192", "TinyCD dw 192 k3 @128", 192, 192, 3, 128, { groups: 192 }),
  conv("tcd_pw192_32", "TinyCD 1×1 192→32 @128", 192, 32, 1, 128),
  conv("tcd_dw192k5s2", "TinyCD dw 192 k5 s2 @128", 192, 192, 5, 128, { groups: 192, stride: 2 }),
  conv("tcd_pw192_56", "TinyCD 1×1 192→56 @64", 192, 56, 1, 64),
  conv("tcd_pw56_336", "TinyCD 1×1 56→336 @64", 56, 336, 1, 64),
  conv("tcd_dw336k5", "TinyCD dw 336 k5 @64", 336, 336, 5, 64, { groups: 336 }),
  conv("tcd_pw336_56", "TinyCD 1×1 336→56 @64", 336, 56, 1, 64),
  conv("tcd_mix3", "TinyCD mix 6→3 g3 k3 @512", 6, 3, 3, 512, { groups: 3 }),
  conv("tcd_mix24", "TinyCD mix 48→24 g24 k3 @256", 48, 24, 3, 256, { groups: 24 }),
  conv("tcd_mix32", "TinyCD mix 64→32 g32 k3 @128", 64, 32, 3, 128, { groups: 32 }),
  conv("tcd_mix56", "TinyCD mix 112→56 g56 k3 @64", 112, 56, 3, 64, { groups: 56 }),
  conv("tcd_lin3_10", "TinyCD 1×1 3→10 @512", 3, 10, 1, 512),
  conv("tcd_dw56", "TinyCD up dw 56 k3 @128", 56, 56, 3, 128, { groups: 56 }),
  conv("tcd_pw56_64", "TinyCD up 1×1 56→64 @128", 56, 64, 1, 128),
  conv("tcd_dw64_256", "TinyCD up dw 64 k3 @256", 64, 64, 3, 256, { groups: 64 }),
  conv("tcd_pw64_64", "TinyCD up 1×1 64→64 @256", 64, 64, 1, 256),
  conv("tcd_dw64_512", "TinyCD up dw 64 k3 @512", 64, 64, 3, 512, { groups: 64 }),
  conv("tcd_pw64_32", "TinyCD up 1×1 64→32 @512", 64, 32, 1, 512),
  conv("tcd_cls32_16", "TinyCD classify 1×1 32→16 @512", 32, 16, 1, 512),
  conv("tcd_cls16_8", "TinyCD classify 1×1 16→8 @512", 16, 8, 1, 512),
  conv("tcd_cls8_1", "TinyCD classify 1×1 8→1 @512", 8, 1, 1, 512),
  conv("fcs_c3_16", "FC-Siam 3→16 k3 @512", 3, 16, 3, 512),
  conv("fcs_c16_16", "FC-Siam 16→16 k3 @512", 16, 16, 3, 512),
  conv("fcs_c16_32", "FC-Siam 16→32 k3 @256", 16, 32, 3, 256),
  conv("fcs_c32_32", "FC-Siam 32→32 k3 @256", 32, 32, 3, 256),
  conv("fcs_c32_64", "FC-Siam 32→64 k3 @128", 32, 64, 3, 128),
  conv("fcs_c64_64", "FC-Siam 64→64 k3 @128", 64, 64, 3, 128),
  conv("fcs_c64_128", "FC-Siam 64→128 k3 @64", 64, 128, 3, 64),
  conv("fcs_c128_128", "FC-Siam 128→128 k3 @64", 128, 128, 3, 64),
  convT("fcs_up128", "FC-Siam upT 128→128 k3 s2 @32", 128, 128, 3, 32, 2),
  convT("fcs_up64", "FC-Siam upT 64→64 k3 s2 @64", 64, 64, 3, 64, 2),
  convT("fcs_up32", "FC-Siam upT 32→32 k3 s2 @128", 32, 32, 3, 128, 2),
  convT("fcs_up16", "FC-Siam upT 16→16 k3 s2 @256", 16, 16, 3, 256, 2),
  convT("fcs_d256_128", "FC-Siam convT 256→128 k3 @64", 256, 128, 3, 64, 1),
  convT("fcs_d128_64", "FC-Siam convT 128→64 k3 @128", 128, 64, 3, 128, 1),
  convT("fcs_d64_32", "FC-Siam convT 64→32 k3 @256", 64, 32, 3, 256, 1),
  convT("fcs_d32_16", "FC-Siam convT 32→16 k3 @512", 32, 16, 3, 512, 1),
  convT("fcs_d16_2", "FC-Siam convT 16→2 k3 @512", 16, 2, 3, 512, 1),
  convT("snu_up32", "SNUNet upT 32→32 k2 s2 @128", 32, 32, 2, 128, 2),
  convT("snu_up256", "SNUNet upT 256→256 k2 s2 @16", 256, 256, 2, 16, 2),
].filter((l) => !ONLY || l.key.includes(ONLY));

if (args.includes("--list")) {
  console.log(JSON.stringify(LAYERS));
  Deno.exit(0);
}

await initDevice();
const torchPath = arg("--torch");
const torch: { device?: string; results?: Record<string, number> } = torchPath
  ? JSON.parse(await Deno.readTextFile(torchPath).catch(() => "{}"))
  : {};

// ---------------------------------------------------------------- data

const SEED_MUL = 0x9e3779b9;

/** The value at index i of the tensor seeded `seed` (PCG hash), exact in f32: [-1, 1)·scale. */
function hashValue(i: number, seed: number, scale: number): number {
  let x = (i + Math.imul(seed, SEED_MUL)) >>> 0;
  x = (Math.imul(x, 747796405) + 2891336453) >>> 0;
  x = Math.imul(((x >>> ((x >>> 28) + 4)) ^ x) >>> 0, 277803737) >>> 0;
  x = ((x >>> 22) ^ x) >>> 0;
  return ((x >>> 8) * 2 / 16777216 - 1) * scale;
}

function hashFillKernel(n: number, seed: number, scale: number): Kernel {
  const g = grid1d(n);
  return {
    name: "hash_fill",
    workgroups: g.workgroups,
    code: `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = ${g.index};
  if (i >= ${n}u) { return; }
  var x = i + ${(Math.imul(seed, SEED_MUL) >>> 0)}u;
  x = x * 747796405u + 2891336453u;
  x = ((x >> ((x >> 28u) + 4u)) ^ x) * 277803737u;
  x = (x >> 22u) ^ x;
  out[i] = (f32(x >> 8u) * ${2 / 16777216} - 1.0) * ${scale};
}`,
  };
}

interface Data {
  t: Tensor;
  seed: number;
  scale: number;
}

function filled(shape: number[], seed: number, scale: number): Data {
  const t = empty(shape).keep();
  run(hashFillKernel(t.size, seed, scale), [], [t]);
  return { t, seed, scale };
}

const at = (d: Data, i: number) => hashValue(i, d.seed, d.scale);

// ---------------------------------------------------------------- float64 samples

/** Every multiply-add of output element `yi` of the conv: calls f(xIndex, wIndex). */
function convTerms(g: ConvGeometry, yi: number, f: (xi: number, wi: number) => void): void {
  const cig = g.ci / g.groups, cog = g.co / g.groups;
  const ox = yi % g.wo, oy = Math.floor(yi / g.wo) % g.ho;
  const co = Math.floor(yi / (g.wo * g.ho)) % g.co, b = Math.floor(yi / (g.wo * g.ho * g.co));
  const c0 = Math.floor(co / cog) * cig;
  for (let r = 0; r < cig; r++) {
    for (let ky = 0; ky < g.kh; ky++) {
      const iy = oy * g.strideY - g.padY + ky * g.dilY;
      if (iy < 0 || iy >= g.h) continue;
      for (let kx = 0; kx < g.kw; kx++) {
        const ix = ox * g.strideX - g.padX + kx * g.dilX;
        if (ix < 0 || ix >= g.w) continue;
        f(((b * g.ci + c0 + r) * g.h + iy) * g.w + ix, ((co * cig + r) * g.kh + ky) * g.kw + kx);
      }
    }
  }
}

/** Relative error |got − ref| / Σ|terms| over a few sampled outputs. */
type Sampler = (got: Float32Array) => number;

function samples(n: number, count: number): number[] {
  return Array.from({ length: count }, (_, s) => Math.floor(((s + 0.37) / count) * n) % n);
}

function forwardSampler(g: ConvGeometry, x: Data, w: Data): Sampler {
  return (got) => {
    let worst = 0;
    for (const yi of samples(got.length, 16)) {
      let ref = 0, mag = 0;
      convTerms(g, yi, (xi, wi) => {
        const p = at(x, xi) * at(w, wi);
        ref += p;
        mag += Math.abs(p);
      });
      worst = Math.max(worst, Math.abs(got[yi] - ref) / (mag || 1));
    }
    return worst;
  };
}

function dgradSampler(g: ConvGeometry, dy: Data, w: Data): Sampler {
  // dx[xi] = Σ over every output whose window covers xi: scan outputs in the neighbourhood.
  return (got) => {
    let worst = 0;
    const cig = g.ci / g.groups, cog = g.co / g.groups;
    for (const xi of samples(got.length, 12)) {
      const ix = xi % g.w, iy = Math.floor(xi / g.w) % g.h;
      const ci = Math.floor(xi / (g.w * g.h)) % g.ci, b = Math.floor(xi / (g.w * g.h * g.ci));
      const grp = Math.floor(ci / cig), r = ci % cig;
      let ref = 0, mag = 0;
      for (let o = 0; o < cog; o++) {
        const co = grp * cog + o;
        for (let ky = 0; ky < g.kh; ky++) {
          const ny = iy + g.padY - ky * g.dilY;
          if (ny < 0 || ny % g.strideY || ny / g.strideY >= g.ho) continue;
          for (let kx = 0; kx < g.kw; kx++) {
            const nx = ix + g.padX - kx * g.dilX;
            if (nx < 0 || nx % g.strideX || nx / g.strideX >= g.wo) continue;
            const yi = ((b * g.co + co) * g.ho + ny / g.strideY) * g.wo + nx / g.strideX;
            const p = at(dy, yi) * at(w, ((co * cig + r) * g.kh + ky) * g.kw + kx);
            ref += p;
            mag += Math.abs(p);
          }
        }
      }
      worst = Math.max(worst, Math.abs(got[xi] - ref) / (mag || 1));
    }
    return worst;
  };
}

function wgradSampler(g: ConvGeometry, x: Data, dy: Data): Sampler {
  return (got) => {
    let worst = 0;
    const cig = g.ci / g.groups, cog = g.co / g.groups;
    for (const wi of samples(got.length, 2)) {
      const kx = wi % g.kw, ky = Math.floor(wi / g.kw) % g.kh;
      const r = Math.floor(wi / (g.kw * g.kh)) % cig, co = Math.floor(wi / (g.kw * g.kh * cig));
      const ci = Math.floor(co / cog) * cig + r;
      let ref = 0, mag = 0;
      for (let b = 0; b < g.batch; b++) {
        for (let oy = 0; oy < g.ho; oy++) {
          const iy = oy * g.strideY - g.padY + ky * g.dilY;
          if (iy < 0 || iy >= g.h) continue;
          const yRow = ((b * g.co + co) * g.ho + oy) * g.wo;
          const xRow = ((b * g.ci + ci) * g.h + iy) * g.w;
          for (let ox = 0; ox < g.wo; ox++) {
            const ix = ox * g.strideX - g.padX + kx * g.dilX;
            if (ix < 0 || ix >= g.w) continue;
            const p = at(dy, yRow + ox) * at(x, xRow + ix);
            ref += p;
            mag += Math.abs(p);
          }
        }
      }
      worst = Math.max(worst, Math.abs(got[wi] - ref) / (mag || 1));
    }
    return worst;
  };
}

// ---------------------------------------------------------------- timing

const clock = hasFeature("timestamp-query") ? new GpuClock() : null;

/** ms per launch of `step` (GPU timestamps, else wall clock). */
async function sampleMs(step: () => void, n: number): Promise<number> {
  const t0 = performance.now();
  clock?.mark(0);
  for (let i = 0; i < n; i++) scope(step);
  clock?.mark(1);
  if (clock) return (await clock.elapsedMs()) / n;
  await sync();
  return (performance.now() - t0) / n;
}

async function timeMs(step: () => void): Promise<number> {
  await sampleMs(step, 1); // compile
  const probe = await sampleMs(step, 2);
  const n = Math.max(2, Math.min(300, Math.ceil(TARGET_MS / Math.max(probe, 1e-3))));
  // The CPU-side checks between cases leave the GPU idle long enough to drop its clock: ~4
  // samples' worth of launches first, so the timed ones run at the clock a busy GPU keeps.
  if (!SMALL) await sampleMs(step, 4 * n);
  const xs: number[] = [];
  for (let s = 0; s < SAMPLES; s++) xs.push(await sampleMs(step, n));
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

/** Keep the GPU busy with 2048² matmuls for `ms` of wall time. */
async function warmUp(ms: number): Promise<void> {
  const a = empty([2048, 2048]).keep(), b = empty([2048, 2048]).keep();
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 20; i++) scope(() => void gemm(a, b));
    await sync();
  }
  a.dispose();
  b.dispose();
}

/** Run `launch` once, check its output with `check`, then time it. */
async function measure(launch: () => Tensor, check: Sampler): Promise<{ ms: number; err: number }> {
  const out = scope(launch);
  const err = check((await out.read()) as Float32Array);
  out.dispose();
  return { ms: await timeMs(() => void launch()), err };
}

// ---------------------------------------------------------------- sweeps

// The picker's own tiles plus the ones it no longer picks, to keep checking them.
const SWEEP_TILES: Record<string, GemmTile> = {
  ...GEMM_TILES,
  t32: { tm: 32, tn: 128, tk: 8, rm: 4, rn: 4 },
  t64s: { tm: 64, tn: 128, tk: 8, rm: 4, rn: 8 },
  t64n64: { tm: 64, tn: 64, tk: 16, rm: 8, rn: 4 },
  t128: { tm: 128, tn: 128, tk: 8, rm: 8, rn: 8 },
  t128k16: { tm: 128, tn: 128, tk: 16, rm: 8, rn: 8 },
  t64r88k8: { tm: 64, tn: 128, tk: 8, rm: 8, rn: 8 },
};

/** Matmul tiles for 1×1 convs: planMatmul's candidates, and each with 8-deep slabs. */
const MATMUL_SWEEP_TILES: TileConfig[] = [
  [128, 128, 8, 8],
  [64, 64, 4, 4],
  [64, 128, 4, 8],
  [128, 64, 8, 4],
  [32, 128, 4, 4],
  [128, 32, 4, 4],
  [32, 32, 4, 4],
  [16, 64, 4, 4],
  [64, 16, 4, 4],
].flatMap(([bm, bn, tm, tn]) => [16, 8].map((bk) => ({ ...TILE_LARGE, bm, bn, tm, tn, bk })));

const WGRAD_TILES: Record<string, WgradTile> = {
  w8x16: { tm: 8, tk: 16, tp: 16, rm: 2, rk: 4 },
  w16x32: { tm: 16, tk: 32, tp: 16, rm: 2, rk: 4 },
  w16x64: { tm: 16, tk: 64, tp: 16, rm: 4, rk: 4 },
  w32x32: { tm: 32, tk: 32, tp: 16, rm: 4, rk: 4 },
  w32x64: { tm: 32, tk: 64, tp: 16, rm: 4, rk: 8 },
  w64x64: { tm: 64, tk: 64, tp: 16, rm: 4, rk: 8 },
  w64x64p32: { tm: 64, tk: 64, tp: 32, rm: 8, rk: 8 },
  w64x128: { tm: 64, tk: 128, tp: 16, rm: 8, rk: 8 },
};

/** Tiles worth trying for a GEMM with `mg` rows: none much taller than needed. */
function gemmCandidates(mg: number): [string, GemmTile][] {
  return Object.entries(SWEEP_TILES).filter(([, t]) => t.tm <= Math.max(16, 2 * mg));
}

interface SweepRow {
  key: string;
  op: string;
  variant: string;
  ms: number;
  err: number;
}
const sweepRows: SweepRow[] = [];

async function sweep(
  key: string,
  op: string,
  variants: [string, () => Tensor][],
  check: Sampler,
): Promise<void> {
  for (const [variant, launch] of variants) {
    try {
      const r = await measure(launch, check);
      sweepRows.push({ key, op, variant, ...r });
    } catch (e) {
      console.log(`  ${key} ${op} ${variant}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  const mine = sweepRows.filter((r) => r.key === key && r.op === op);
  const best = mine.reduce((a, b) => (b.ms < a.ms ? b : a), mine[0]);
  if (best) {
    console.log(
      `  sweep ${key} ${op}: ${
        mine.map((r) => `${r.variant} ${r.ms.toFixed(3)}`).join(", ")
      } → best ${best.variant}`,
    );
  }
}

function forwardVariants(g: ConvGeometry, x: Tensor, w: Tensor): [string, () => Tensor][] {
  const out = () => empty([g.batch, g.co, g.ho, g.wo]);
  if (forwardIsDirect(g)) {
    return [2, 4, 8].map((rw) => [`rw${rw}`, () => {
      const y = out();
      run(directConvKernel({ mode: "forward", geom: g, epilogue: NO_EPILOGUE, rw }), [x, w], [y]);
      return y;
    }]);
  }
  if (matmul1x1Fits(g)) {
    // The matmul op's forward with each tile (mm<bm>x<bn>k<bk>).
    const hw = g.h * g.w;
    return MATMUL_SWEEP_TILES.map((tile) => [`mm${tile.bm}x${tile.bn}k${tile.bk}`, () => {
      return gemm(view(w, [g.co, g.ci]), view(x, [g.batch, g.ci, hw]), { tile });
    }]);
  }
  const gemms: [string, () => Tensor][] = gemmCandidates(g.co / g.groups).map((
    [name, tile],
  ) => [name, () => {
    const y = out();
    run(implicitGemmKernel(forwardGemmSpec(g, NO_EPILOGUE, tile)), [x, w], [y]);
    return y;
  }]);
  // Split reductions ("/sN") on the tiles that win most often.
  for (const [name, tile] of gemmCandidates(g.co / g.groups)) {
    const split = ["t64w", "t64", "t32w", "t32r8", "t64wk16", "t64r8", "t64r88k8", "t16", "t16w"];
    if (!split.includes(name)) continue;
    for (const splits of [2, 3, 4]) {
      const spec = { ...forwardGemmSpec(g, NO_EPILOGUE, tile), splits };
      gemms.push([`${name}/s${splits}`, () => {
        const y = out();
        runImplicitGemm(spec, x, w, [], [y]);
        return y;
      }]);
    }
    // Packed weights ("/p"), unsplit and split.
    for (const splits of [1, 2, 3, 4]) {
      const spec = { ...forwardGemmSpec(g, NO_EPILOGUE, tile), splits, packedWeights: true };
      if (!tapMajorFits(spec)) continue;
      gemms.push([`${name}${splits > 1 ? `/s${splits}` : ""}/p`, () => {
        const y = out();
        runImplicitGemm(spec, x, w, [], [y]);
        return y;
      }]);
    }
  }
  if (!winogradFits(g)) return gemms;
  return [...winogradVariants(forwardWinogradSpec(g, NO_EPILOGUE), x, w, false), ...gemms];
}

/** The Winograd kernel with each channel tile (weight transform included). */
function winogradVariants(
  base: WinogradSpec,
  x: Tensor,
  w: Tensor,
  flip: boolean,
): [string, () => Tensor][] {
  return [16, 32].map((tm) => [`wino${tm}`, () => {
    const y = empty([base.batch, base.m, base.outH, base.outW]);
    runWinograd({ ...base, tm }, x, w, flip, [], [y]);
    return y;
  }]);
}

function dgradVariants(g: ConvGeometry, dy: Tensor, w: Tensor): [string, () => Tensor][] {
  const out = () => empty([g.batch, g.ci, g.h, g.w]);
  if (dgradIsDirect(g)) {
    return [2, 4, 8].map((rw) => [`rw${rw}`, () => {
      const y = out();
      run(directConvKernel({ mode: "dgrad", geom: g, epilogue: NO_EPILOGUE, rw }), [dy, w], [y]);
      return y;
    }]);
  }
  const gemms: [string, () => Tensor][] = gemmCandidates(g.ci / g.groups).map((
    [name, tile],
  ) => [name, () => {
    const y = out();
    for (const s of dgradGemmSpecs(g, NO_EPILOGUE, tile)) {
      if (s.ny > 0 && s.nx > 0) run(implicitGemmKernel(s), [dy, w], [y]);
    }
    return y;
  }]);
  // Packed weights ("/p") for the phases that walk tap-major.
  for (const [name, tile] of gemmCandidates(g.ci / g.groups)) {
    const specs = dgradGemmSpecs(g, NO_EPILOGUE, tile).filter((s) => s.ny > 0 && s.nx > 0)
      .map((s) => ({ ...s, packedWeights: tapMajorFits(s) }));
    if (!specs.some((s) => s.packedWeights)) continue;
    gemms.push([`${name}/p`, () => {
      const y = out();
      for (const s of specs) {
        const wp = s.packedWeights ? packWeights(s, w) : w;
        run(implicitGemmKernel(s), [dy, wp], [y]);
        if (wp !== w) wp.dispose();
      }
      return y;
    }]);
  }
  if (g.groups === 1 && (g.strideY > 1 || g.strideX > 1) && g.kh * g.kw > 1) {
    gemms.unshift(["col2im", () => {
      const y = out();
      runCol2im(g, dy, w, NO_EPILOGUE, [], [y]);
      return y;
    }]);
  }
  if (!winogradFitsDgrad(g)) return gemms;
  return [...winogradVariants(dgradWinogradSpec(g, NO_EPILOGUE), dy, w, true), ...gemms];
}

function wgradVariants(g: ConvGeometry, x: Tensor, dy: Tensor): [string, () => Tensor][] {
  if (wgradIsDirect(g)) return [];
  const mg = g.co / g.groups, cols = wgradColumns(g, false);
  const variants: [string, () => Tensor][] = [[
    "pick",
    () => convWeightGradRaw(g, x, dy, false).dw,
  ]];
  if (winogradFits(g)) variants.push(["wino4", () => winogradWeightGradRaw(g, x, dy)]);
  if (smallWgradFits(g)) variants.push(["small", () => small1x1WeightGradRaw(g, x, dy, false).dw]);
  for (const [name, tile] of Object.entries(WGRAD_TILES)) {
    if (tile.tm > Math.max(8, 2 * mg) || tile.tk > Math.max(16, 2 * cols)) continue;
    for (const target of [512, 2048]) {
      variants.push([`${name}/${target}`, () => {
        const tiles = Math.ceil(cols / tile.tk) * Math.ceil(mg / tile.tm) * g.groups;
        const sp = pickSplits(tiles * (1024 / target), g.batch * g.ho * g.wo, tile.tp);
        const dw = empty([g.co, g.ci / g.groups, g.kh, g.kw]);
        const part = sp.splits === 1 ? dw : empty([sp.splits, g.co, cols]);
        run(
          wgradGemmKernel({ geom: g, bias: false, splits: sp.splits, chunk: sp.chunk, tile }),
          [x, dy],
          [part],
        );
        if (part !== dw) {
          run(splitReduceKernel({ splits: sp.splits, co: g.co, cols, bias: false }), [part], [dw]);
        }
        return dw;
      }]);
    }
  }
  return variants;
}

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

function pathOf(g: ConvGeometry, op: string): string {
  const direct = op === "fwd"
    ? forwardIsDirect(g)
    : op === "dgrad"
    ? dgradIsDirect(g)
    : wgradIsDirect(g);
  if (op === "fwd" && winogradFits(g)) return "winograd";
  if (op === "dgrad" && winogradFitsDgrad(g)) return "winograd";
  if (op === "wgrad" && winogradWgradFits(g)) return "wino4";
  if (op === "dgrad" && col2imFits(g)) return "col2im";
  return direct ? "direct" : "gemm";
}

type Case = [op: string, launch: () => Tensor, check: Sampler, path: string];

/** pathOf, with the small 1×1 kernels (engine/ops/conv1x1_small.ts) where the conv ops take them:
 * forward and input gradient up to 256 weights (small1x1Fits), the weight gradient (convWeightGradRaw)
 * up to 1152 (smallWgradFits). */
function opPath(g: ConvGeometry, op: string): string {
  const direct = op === "fwd"
    ? forwardIsDirect(g)
    : op === "dgrad"
    ? dgradIsDirect(g)
    : wgradIsDirect(g);
  const small = op === "wgrad" ? smallWgradFits(g) : small1x1Fits(g);
  return small && !direct ? "small" : pathOf(g, op);
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
      pathOf(g, "wgrad"),
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
