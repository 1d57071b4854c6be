// Convolution routing in one place: which kernel computes each pass of a convolution (forward,
// input gradient, weight gradient) and why. Every threshold is a named constant here with its
// reason; the op files (engine/ops/conv2d.ts, conv_transpose2d.ts, conv1x1_small.ts) only launch
// the route they are given. Plans are pure functions of the geometry, the epilogue and the
// device profile (kernels/device_profile.ts), so tests/engine/conv_routes_test.ts pins every
// registered model's routes under an H100 profile without running a kernel
// (tests/engine/conv_routes_h100.txt answers "which kernel runs this layer's pass").
//
// Order of the checks, per computation (the first that fits wins):
//   forward: small 1×1 mix → Winograd F(4×4) fused (narrow, where the profile allows) →
//     Winograd F(6×6) or F(4×4) GEMM (wide) → Winograd F(2×2) (any groups) →
//     direct → implicit GEMM (tile, splits, packing)
//   input gradient: small 1×1 mix → Winograd F(4×4) fused, flipped (likewise) → F(6×6) or
//     F(4×4) GEMM, flipped → Winograd F(2×2), flipped →
//     GEMM + col2im (wide, or a patch conv) → direct → implicit GEMM per output phase
//   weight gradient: small 1×1 → Winograd F(4×4) fused (likewise) → Winograd F(6×6) or F(4×4) →
//     direct split → split-K GEMM
// (F(6×6) where the profile allows it and the output's edges waste few of its larger tiles.)
// and per op: a conv2d whose whole computation is a plain matrix product takes the matmul op
// (its autograd runs the backward); a kernel = stride transposed conv from enough channels runs
// as GEMMs + pixel shuffles. A transposed conv's forward is its conv's input gradient and its
// input gradient that conv's forward.

import { type ConvActivation, type ConvGeometry, type Epilogue, NO_EPILOGUE } from "./conv2d.ts";
import { MAX_BLOCKS, smallWgradSplits, wgradBlocks } from "./conv1x1_small.ts";
import { columnsBytes } from "./conv2d_columns.ts";
import {
  dgradGemmSpecs,
  forwardGemmSpec,
  GEMM_TILES,
  type GemmTile,
  type ImplicitGemmSpec,
} from "./conv2d_gemm_plan.ts";
import {
  directWgradStrips,
  pickSplits,
  pickWgradTile,
  wgradColumns,
  type WgradTile,
} from "./conv2d_wgrad.ts";
import { winoWgradBytesPerImage } from "./conv2d_winograd_wgrad.ts";
import { FUSED_WGRAD_CHANNELS, FUSED_WGRAD_SLAB } from "./conv2d_winograd4_fused_wgrad.ts";
import { tilesF4, type WinoTile, winoTiles } from "./winograd_math.ts";
import { activeProfile, type DeviceProfile } from "./device_profile.ts";

// ---- thresholds -------------------------------------------------------------------------

/** Channels per group up to which the direct kernels (one channel per thread, taps unrolled)
 * take a pass: a GEMM's M dimension would be mostly padding (depthwise, mixing convs). */
export const DIRECT_MAX_CHANNELS = 4;
/** Weights per output channel the direct weight gradient holds in registers per thread: up to a
 * 3×3 over 4 channels (HANet's grouped dilated convs, 2 outputs per group, whose split-K GEMM
 * weight gradients took 153 of its 531 ms step on an H100, tiles mostly padding). */
export const DIRECT_WGRAD_MAX_WEIGHTS = 36;
/** Winograd F(2×2, 3×3) from this many channels each way: below, the transforms cost more than
 * the 16-for-36 multiplies save. */
export const WINOGRAD_MIN_CHANNELS = 8;
/** Winograd F(4×4) around the matmul kernel (conv2d_winograd4.ts) from this many channels per
 * group each way. On an H100 (bench/gpu_winograd4.ts, bench/results/winograd4_h100_s12.md) it
 * beat the fused F(2×2) kernel on all 22 layers measured, forward and input gradient, 16→16 at
 * 512² included (1.72 against 2.39 ms), up to 3.06× at 256→256 @64²; narrower convs were not
 * measured and keep F(2×2). */
export const WINO4_MIN_CHANNELS = 16;
/** Images per F(4×4) or F(6×6) launch: V [E, R, T] and P [E, M, T] at most this size each. */
export const WINO4_CHUNK_BYTES = 256 << 20;
/** F(6×6) replaces F(4×4) (where the profile's winograd6 allows) when its transformed elements
 * over the output, 64·⌈H/6⌉·⌈W/6⌉, are at most this fraction of F(4×4)'s 36·⌈H/4⌉·⌈W/4⌉: 0.80
 * at 512² and 0.84 at 64², but 1.0 at 32² and 16², where its larger tiles overhang the edges. */
export const WINO6_MAX_ELEMENT_RATIO = 0.9;
/** Winograd's input gradient pads by 2 − pad: larger paddings have no such form. */
const WINOGRAD_MAX_PAD = 2;
/** Winograd F(4×4) weight gradient from 16 channels each way: it beat the split-K GEMM on
 * every FC-Siam layer that wide in an H200 sweep (16→16 @512: 0.79 against 1.02 ms; 128→128
 * @64: 0.14 against 0.42). */
export const WINO_WGRAD_MIN_CHANNELS = 16;
/** Transformed operands per Winograd weight-gradient launch: larger batches go in chunks of
 * images, which bounds temporary memory and keeps each operand inside one storage binding. */
export const WINO_WGRAD_CHUNK_BYTES = 512 << 20;
/** GEMM + col2im input gradient from 64 channels each way: in an H200 sweep of FC-Siam's k3 s2
 * up-convs it beat the phase-split implicit GEMM at 128 and 64 channels (0.126 against 0.239
 * ms, 0.182 against 0.207) and lost at 32 and 16. */
export const COL2IM_MIN_CHANNELS = 64;
/** Patch convs from 4×4 take col2im at any width (patchCol2imFits): 16+ phase launches of a few
 * workgroups each. SNUNet's 2×2 up-convs at 256² keep their 4 well-filled phase GEMMs, whose
 * columns would take 268 MB. */
export const PATCH_COL2IM_MIN_TAPS = 16;
/** The columns buffer of col2im at most this size (a temporary of dy's size × taps). */
export const COL2IM_MAX_BYTES = 512 << 20;
/** Small 1×1 kernels (forward, input and weight gradients) up to this many weights: above, the
 * GEMM tiles fill (TinyCD's 24→24 weight gradient ran at 1.30× cuDNN, 32→16 at 0.93×), below
 * they are mostly padding (3→10, 16→8 weight gradients at 2.1–2.5×; bench/results/conv_h200.txt). */
export const SMALL_1X1_MAX_WEIGHTS = 256;
/** The small 1×1 weight gradient (only) up to this many weights: TinyCD's 24→24 split-K GEMM
 * weight gradient took 0.17–0.21 ms against cuDNN's 0.13 on an H200 (256², batch 8), where
 * reading x and dy once takes about 0.03. */
export const SMALL_WGRAD_MAX_WEIGHTS = 1152;
/** A plain 1×1 conv takes the matmul op above this many weights: at or below, the matmul op's
 * weight gradient (the batch folded into a long reduction over a tiny product) lost to the conv
 * kernels (24→24 @256: 0.27 against 0.17 ms on an H200); forward and input gradient were even. */
export const MATMUL_1X1_MIN_WEIGHTS = 1152;
/** Direct weight gradient: partial sums per output channel about this many over all channels
 * (2048 / Co splits), each split at least DIRECT_WGRAD_STRIPS strips of 4 outputs, and no more
 * splits than one dispatch dimension allows (WebGPU's 65535). */
const DIRECT_WGRAD_PARTIALS = 2048;
const DIRECT_WGRAD_STRIPS = 1024;
const MAX_DISPATCH = 65535;
/** Outputs along x per direct weight-gradient strip. */
const DIRECT_WGRAD_RW = 4;
/** Split-K weight gradient: each chunk at least this many tile steps of positions. */
const WGRAD_MIN_STEPS = 16;
/** Fused Winograd weight gradient: each workgroup at least this many 4×4 tiles, so its 36 × 16 ×
 * 16 partial sums stay about 4 % of the x and dy it reads. */
const FUSED_WGRAD_MIN_TILES = 256;

// ---- routes -------------------------------------------------------------------------------

export type ForwardRoute =
  | { kind: "small1x1-mix" }
  | { kind: "winograd-f2" }
  | { kind: "winograd-f4-fused" }
  | { kind: "winograd-f4-gemm"; images: number; tile?: 4 }
  | { kind: "winograd-f6-gemm"; images: number; tile: 6 }
  | { kind: "direct" }
  | { kind: "gemm"; spec: ImplicitGemmSpec };

export type DgradRoute =
  | { kind: "small1x1-mix" }
  | { kind: "winograd-f2-flip" }
  | { kind: "winograd-f4-fused-flip" }
  | { kind: "winograd-f4-gemm-flip"; images: number; tile?: 4 }
  | { kind: "winograd-f6-gemm-flip"; images: number; tile: 6 }
  | { kind: "col2im" }
  | { kind: "tap-expand" }
  | { kind: "direct" }
  | { kind: "gemm-dgrad"; specs: ImplicitGemmSpec[] };

export type WgradRoute =
  | { kind: "small1x1-wgrad"; splits: number }
  | { kind: "winograd-f4"; images: number; tile?: 4 }
  | { kind: "winograd-f6"; images: number; tile: 6 }
  | { kind: "winograd-f4-fused"; splits: number; chunk: number }
  | { kind: "direct"; splits: number; chunk: number; rw: number }
  | { kind: "gemm-splitk"; tile: WgradTile; splits: number; chunk: number };

/** The whole op as the matmul op (conv2d) or GEMMs + pixel shuffles (convTranspose2d). */
export type OpRoute = { kind: "matmul-op" } | { kind: "shuffle-gemm" };

export type ConvRoute = ForwardRoute | DgradRoute | WgradRoute | OpRoute;

// ---- predicates ---------------------------------------------------------------------------

function is1x1(g: ConvGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.strideY === 1 && g.strideX === 1 && g.padY === 0 &&
    g.padX === 0 && g.groups === 1;
}

/** Forward (and the transposed form's input gradient) takes the direct kernel. */
export function forwardIsDirect(g: ConvGeometry): boolean {
  return g.co / g.groups <= DIRECT_MAX_CHANNELS;
}

/** The input gradient takes the direct kernel (few input channels per group). */
export function dgradIsDirect(g: ConvGeometry): boolean {
  return g.ci / g.groups <= DIRECT_MAX_CHANNELS;
}

/** The weight gradient takes the direct kernel: few output channels per group, few weights per
 * output channel. */
export function wgradIsDirect(g: ConvGeometry): boolean {
  return g.co / g.groups <= DIRECT_MAX_CHANNELS &&
    (g.ci / g.groups) * g.kh * g.kw <= DIRECT_WGRAD_MAX_WEIGHTS;
}

/** A 1×1 conv the small 1×1 kernels take (all three passes): few weights, and the weight
 * gradient's channel blocks fit one workgroup. */
export function small1x1Fits(g: ConvGeometry): boolean {
  if (!is1x1(g) || g.ci * g.co > SMALL_1X1_MAX_WEIGHTS) return false;
  const b = wgradBlocks(g.ci, g.co);
  return b.nci * b.nco <= MAX_BLOCKS;
}

/** A 1×1 conv whose weight gradient the small 1×1 kernel takes. */
export function smallWgradFits(g: ConvGeometry): boolean {
  return is1x1(g) && g.ci * g.co <= SMALL_WGRAD_MAX_WEIGHTS;
}

/** 3×3, stride 1, undilated, enough channels per group: Winograd F(2×2, 3×3) (groups in one
 * launch; ResNeSt's radix-2 convs took the implicit GEMM before, 59 of ChangerEx-S50's 179 ms
 * step on an H100). */
export function winogradFits(g: ConvGeometry): boolean {
  return winogradShape(g) && g.ci / g.groups >= WINOGRAD_MIN_CHANNELS &&
    g.co / g.groups >= WINOGRAD_MIN_CHANNELS;
}

/** 3×3, stride 1, undilated: the convs every Winograd form computes. */
function winogradShape(g: ConvGeometry): boolean {
  return g.kh === 3 && g.kw === 3 && g.strideY === 1 && g.strideX === 1 && g.dilY === 1 &&
    g.dilX === 1;
}

/** Winograd's input gradient pads by 2 − pad: it needs pad ≤ 2. */
function dgradPadFits(g: ConvGeometry): boolean {
  return g.padY <= WINOGRAD_MAX_PAD && g.padX <= WINOGRAD_MAX_PAD;
}

/** Images per F(4×4) (or F(6×6)) launch: its transformed operands are the weight gradient's
 * size. */
export function winograd4Images(g: ConvGeometry, tile: WinoTile = 4): number {
  const perImage = winoWgradBytesPerImage(g, tile);
  return Math.max(1, Math.min(g.batch, Math.floor(WINO4_CHUNK_BYTES / perImage)));
}

/** The profile allows F(6×6) and it pays on an outH × outW output (WINO6_MAX_ELEMENT_RATIO). */
export function winograd6Pays(
  outH: number,
  outW: number,
  profile: DeviceProfile = activeProfile(),
): boolean {
  if (!profile.winograd6) return false;
  const f6 = 64 * winoTiles(1, outH, outW, 6).t, f4 = 36 * winoTiles(1, outH, outW, 4).t;
  return f6 <= WINO6_MAX_ELEMENT_RATIO * f4;
}

/** Fused Winograd F(4×4) (conv2d_winograd4_fused.ts): one group, no channel count above the
 * profile's fusedWino4MaxChannels (0 in every profile until a GPU measurement sets it). */
export function winograd4FusedFits(
  g: ConvGeometry,
  profile: DeviceProfile = activeProfile(),
): boolean {
  return winogradShape(g) && g.groups === 1 &&
    Math.max(g.ci, g.co) <= profile.fusedWino4MaxChannels;
}

/** Winograd F(4×4) around the GEMM: a Winograd conv wide enough each way. */
export function winograd4Fits(g: ConvGeometry): boolean {
  return winogradFits(g) && g.ci / g.groups >= WINO4_MIN_CHANNELS &&
    g.co / g.groups >= WINO4_MIN_CHANNELS;
}

/** The input gradient of such a conv on Winograd (its padding becomes 2 − pad). */
export function winogradFitsDgrad(g: ConvGeometry): boolean {
  return winogradFits(g) && dgradPadFits(g);
}

/** Winograd F(4×4, 3×3) weight gradient (groups as one batched GEMM). */
export function winogradWgradFits(g: ConvGeometry): boolean {
  return winogradFits(g) && g.ci / g.groups >= WINO_WGRAD_MIN_CHANNELS &&
    g.co / g.groups >= WINO_WGRAD_MIN_CHANNELS &&
    winoWgradBytesPerImage(g) <= WINO_WGRAD_CHUNK_BYTES;
}

/** GEMM + col2im input gradient: strided, kernel > 1×1, one group, wide, columns that fit. */
export function col2imFits(g: ConvGeometry): boolean {
  return g.groups === 1 && (g.strideY > 1 || g.strideX > 1) && g.kh * g.kw > 1 &&
    columnsBytes(g) <= COL2IM_MAX_BYTES && g.ci >= COL2IM_MIN_CHANNELS &&
    g.co >= COL2IM_MIN_CHANNELS;
}

/** GEMM + col2im input gradient of a patch conv (kernel = stride, no padding, dilation 1, one
 * group, the input tiled exactly) of at least PATCH_COL2IM_MIN_TAPS taps at any width: each input
 * pixel takes one tap, so col2im is a pure permutation and one GEMM replaces kh·kw phase GEMMs.
 * MiT-b0's 8×8 stride-8 32→32 spatial reduction ran as 64 phase GEMMs of 16 workgroups each,
 * 1.1 ms on an H100. */
export function patchCol2imFits(g: ConvGeometry): boolean {
  return g.groups === 1 && g.kh === g.strideY && g.kw === g.strideX &&
    g.kh * g.kw >= PATCH_COL2IM_MIN_TAPS &&
    g.padY === 0 && g.padX === 0 && g.dilY === 1 && g.dilX === 1 && g.h === g.ho * g.strideY &&
    g.w === g.wo * g.strideX && columnsBytes(g) <= COL2IM_MAX_BYTES;
}

/** The input gradient of a patch conv (kernel = stride > 1×1, no padding, dilation 1, one
 * group, the input tiled exactly) as one pass of one thread per dy pixel
 * (kernels/conv2d_tap_expand.ts), up to the profile's tapExpandMaxChannels each way. A 1×1
 * conv's input gradient is one GEMM with no phases to merge, so it keeps the GEMM. */
export function tapExpandFits(g: ConvGeometry, profile: DeviceProfile = activeProfile()): boolean {
  return g.groups === 1 && g.kh * g.kw > 1 && g.kh === g.strideY && g.kw === g.strideX &&
    g.padY === 0 && g.padX === 0 && g.dilY === 1 && g.dilX === 1 &&
    g.h === g.ho * g.strideY && g.w === g.wo * g.strideX &&
    Math.max(g.ci, g.co) <= profile.tapExpandMaxChannels;
}

/** A 1×1 conv that is the product W[Co, Ci] × X[b] for the matmul op: not those the direct or
 * small 1×1 kernels take, and more than MATMUL_1X1_MIN_WEIGHTS weights. */
export function matmul1x1Fits(g: ConvGeometry): boolean {
  return is1x1(g) && !forwardIsDirect(g) && !small1x1Fits(g) &&
    g.ci * g.co > MATMUL_1X1_MIN_WEIGHTS;
}

/** The matmul route also needs an epilogue the matmul op fuses: none, ReLU or sigmoid (whose
 * gradients need only the output), SiLU only when no gradient is recorded (BN-folded
 * inference: its backward needs the pre-activation, which the conv kernels save). */
export function matmulConvFits(g: ConvGeometry, act: ConvActivation, recording: boolean): boolean {
  return matmul1x1Fits(g) &&
    (act === "none" || act === "relu" || act === "sigmoid" || (act === "silu" && !recording));
}

/** Kernel == stride, no padding, dilation 1, one group (every output pixel one tap, so the
 * transposed conv is a GEMM plus a pixel shuffle), from the profile's shuffleMinChannels. */
export function shuffleTransposeFits(
  g: ConvGeometry,
  profile: DeviceProfile = activeProfile(),
): boolean {
  return g.kh === g.strideY && g.kw === g.strideX && g.padY === 0 && g.padX === 0 &&
    g.dilY === 1 && g.dilX === 1 && g.groups === 1 && g.h === g.ho * g.strideY &&
    g.w === g.wo * g.strideX && Math.min(g.ci, g.co) >= profile.shuffleMinChannels;
}

// ---- plans per computation -----------------------------------------------------------------

/** The forward computation of conv `g` (y from x) with epilogue `ep`. */
export function planForward(
  g: ConvGeometry,
  ep: Epilogue = NO_EPILOGUE,
  profile: DeviceProfile = activeProfile(),
): ForwardRoute {
  if (small1x1Fits(g) && !forwardIsDirect(g)) return { kind: "small1x1-mix" };
  if (winograd4FusedFits(g, profile)) return { kind: "winograd-f4-fused" };
  if (winograd4Fits(g)) {
    return winograd6Pays(g.ho, g.wo, profile)
      ? { kind: "winograd-f6-gemm", images: winograd4Images(g, 6), tile: 6 }
      : { kind: "winograd-f4-gemm", images: winograd4Images(g) };
  }
  if (winogradFits(g)) return { kind: "winograd-f2" };
  if (forwardIsDirect(g)) return { kind: "direct" };
  return { kind: "gemm", spec: forwardGemmSpec(g, ep, undefined, profile.fillWorkgroups) };
}

/** The input-gradient computation of conv `g` (dx from dy; a transposed conv's forward). */
export function planDgrad(
  g: ConvGeometry,
  ep: Epilogue = NO_EPILOGUE,
  profile: DeviceProfile = activeProfile(),
): DgradRoute {
  if (small1x1Fits(g) && !dgradIsDirect(g)) return { kind: "small1x1-mix" };
  if (winograd4FusedFits(g, profile) && dgradPadFits(g)) return { kind: "winograd-f4-fused-flip" };
  if (winograd4Fits(g) && winogradFitsDgrad(g)) {
    return winograd6Pays(g.h, g.w, profile)
      ? { kind: "winograd-f6-gemm-flip", images: winograd4Images(g, 6), tile: 6 }
      : { kind: "winograd-f4-gemm-flip", images: winograd4Images(g) };
  }
  if (winogradFitsDgrad(g)) return { kind: "winograd-f2-flip" };
  if (tapExpandFits(g, profile)) return { kind: "tap-expand" };
  if (col2imFits(g) || patchCol2imFits(g)) return { kind: "col2im" };
  if (dgradIsDirect(g)) return { kind: "direct" };
  const specs = dgradGemmSpecs(g, ep, undefined, profile.fillWorkgroups)
    .filter((s) => s.ny > 0 && s.nx > 0);
  return { kind: "gemm-dgrad", specs };
}

/** The weight-gradient computation of conv `g` (dW, and the bias's with `withBias`). */
export function planWgrad(
  g: ConvGeometry,
  withBias: boolean,
  profile: DeviceProfile = activeProfile(),
): WgradRoute {
  if (smallWgradFits(g) && !wgradIsDirect(g)) {
    const { splits } = smallWgradSplits({ batch: g.batch, ci: g.ci, co: g.co, pixels: g.h * g.w });
    return { kind: "small1x1-wgrad", splits };
  }
  return planWgradKernels(g, withBias, profile);
}

/** planWgrad without the small 1×1 route (tests and benchmarks compare the two). */
export function planWgradKernels(
  g: ConvGeometry,
  withBias: boolean,
  profile: DeviceProfile = activeProfile(),
): Exclude<WgradRoute, { kind: "small1x1-wgrad" }> {
  if (winograd4FusedFits(g, profile)) {
    return { kind: "winograd-f4-fused", ...fusedWgradSplits(g, profile) };
  }
  if (winogradWgradFits(g)) {
    const tile = winograd6Pays(g.ho, g.wo, profile) ? 6 : 4;
    const perImage = winoWgradBytesPerImage(g, tile);
    const images = Math.min(Math.max(1, Math.floor(WINO_WGRAD_CHUNK_BYTES / perImage)), g.batch);
    return tile === 6 ? { kind: "winograd-f6", images, tile } : { kind: "winograd-f4", images };
  }
  if (wgradIsDirect(g)) return { kind: "direct", ...directWgradSplits(g) };
  const cols1 = wgradColumns(g, withBias);
  const mg = g.co / g.groups;
  const { tile, target } = pickWgradTile(mg, cols1, profile.fillWorkgroups);
  const tiles = Math.ceil(cols1 / tile.tk) * Math.ceil(mg / tile.tm) * g.groups;
  const positions = g.batch * g.ho * g.wo;
  const sp = pickSplits(tiles, positions, tile.tp, WGRAD_MIN_STEPS, target);
  return { kind: "gemm-splitk", tile, splits: sp.splits, chunk: sp.chunk };
}

/** The fused weight gradient's tiles per workgroup (a whole number of slabs) and workgroups
 * along the tiles: about fillWorkgroups in all over the channel blocks, each at least
 * FUSED_WGRAD_MIN_TILES tiles, at most one dispatch dimension's. */
export function fusedWgradSplits(
  g: ConvGeometry,
  profile: DeviceProfile = activeProfile(),
): { splits: number; chunk: number } {
  const { t } = tilesF4(g.batch, g.ho, g.wo);
  const blocks = Math.ceil(g.ci / FUSED_WGRAD_CHANNELS) * Math.ceil(g.co / FUSED_WGRAD_CHANNELS);
  const want = Math.max(
    1,
    Math.min(Math.ceil(profile.fillWorkgroups / blocks), Math.ceil(t / FUSED_WGRAD_MIN_TILES)),
  );
  const slabs = Math.ceil(t / FUSED_WGRAD_SLAB);
  const chunk = FUSED_WGRAD_SLAB *
    Math.max(Math.ceil(slabs / want), Math.ceil(slabs / MAX_DISPATCH));
  return { splits: Math.ceil(t / chunk), chunk };
}

function directWgradSplits(g: ConvGeometry): { splits: number; chunk: number; rw: number } {
  const rw = DIRECT_WGRAD_RW;
  const strips = directWgradStrips(g, rw);
  const want = Math.max(
    1,
    Math.min(
      Math.ceil(DIRECT_WGRAD_PARTIALS / g.co),
      Math.ceil(strips / DIRECT_WGRAD_STRIPS),
      MAX_DISPATCH,
    ),
  );
  const chunk = Math.ceil(strips / want);
  return { splits: Math.ceil(strips / chunk), chunk, rw };
}

// ---- plans per op and pass ------------------------------------------------------------------

export type ConvPass = "forward" | "inputGrad" | "weightGrad";

export interface ConvCallSpec {
  op: "conv2d" | "convTranspose2d";
  /** The convolution's geometry (a transposed conv's: the conv whose input gradient it is). */
  g: ConvGeometry;
  activation: ConvActivation;
  bias: boolean;
  /** A BatchNorm in training follows: the bias gradient is an exact zero, not a weight-gradient
   * column (engine/ops/conv2d_launch.ts cancelledBiasGrad). */
  biasCancelled?: boolean;
  /** Gradients are recorded (the epilogue saves a pre-activation SiLU / PReLU need). */
  recording: boolean;
}

/** The op-level route, when the whole op (all passes) leaves the conv kernels. */
export function planOp(c: ConvCallSpec, profile: DeviceProfile = activeProfile()): OpRoute | null {
  if (c.op === "conv2d") {
    return matmulConvFits(c.g, c.activation, c.recording) ? { kind: "matmul-op" } : null;
  }
  return shuffleTransposeFits(c.g, profile) ? { kind: "shuffle-gemm" } : null;
}

/** The route of one pass of a conv op. The forward's epilogue is the op's (bias, activation);
 * the backward passes run without one, and a conv2d's weight gradient carries the bias's. */
export function planConv(
  c: ConvCallSpec,
  pass: ConvPass,
  profile: DeviceProfile = activeProfile(),
): ConvRoute {
  const op = planOp(c, profile);
  if (op) return op;
  const ep: Epilogue = pass === "forward"
    ? {
      bias: c.bias,
      activation: c.activation,
      savePre: c.recording && (c.activation === "silu" || c.activation === "prelu"),
    }
    : NO_EPILOGUE;
  const t = c.op === "convTranspose2d";
  if (pass === "forward") return t ? planDgrad(c.g, ep, profile) : planForward(c.g, ep, profile);
  if (pass === "inputGrad") {
    return t ? planForward(c.g, ep, profile) : planDgrad(c.g, ep, profile);
  }
  return planWgrad(c.g, !t && c.bias && !c.biasCancelled, profile);
}

const tileName = (t: GemmTile) =>
  Object.entries(GEMM_TILES).find(([, v]) => v === t)?.[0] ?? `${t.tm}x${t.tn}k${t.tk}`;

/** A route in one line (the route table's format). */
export function describeRoute(r: ConvRoute): string {
  switch (r.kind) {
    case "gemm": {
      const s = r.spec;
      return `gemm ${tileName(s.tile)} splits=${s.splits ?? 1}${s.packedWeights ? " packed" : ""}`;
    }
    case "gemm-dgrad": {
      const tiles = r.specs.map((s) => tileName(s.tile));
      const same = tiles.every((t) => t === tiles[0]);
      return `gemm-dgrad ${same ? `${tiles.length}x${tiles[0]}` : tiles.join(",")}`;
    }
    case "small1x1-wgrad":
      return `small1x1-wgrad splits=${r.splits}`;
    case "winograd-f4":
    case "winograd-f4-gemm":
    case "winograd-f4-gemm-flip":
    case "winograd-f6":
    case "winograd-f6-gemm":
    case "winograd-f6-gemm-flip":
      return `${r.kind} images=${r.images}`;
    case "gemm-splitk":
      return `gemm-splitk ${r.tile.tm}x${r.tile.tk} splits=${r.splits}`;
    case "direct":
      return "splits" in r ? `direct splits=${r.splits}` : "direct";
    case "winograd-f4-fused":
      return "splits" in r ? `winograd-f4-fused splits=${r.splits}` : r.kind;
    default:
      return r.kind;
  }
}
