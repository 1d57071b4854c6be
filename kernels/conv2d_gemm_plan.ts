// The implicit GEMM's launch plans (kernels/conv2d_gemm.ts generates their WGSL): the tile
// shapes, the pickers that choose a tile, reduction splits and weight packing per layer (tuned
// by H200 sweeps, bench/gpu_conv.ts --sweep), and the specs of a forward conv and of the
// phase-split input gradient. How many workgroups fill the GPU comes from the device profile
// (kernels/device_profile.ts; kernels/conv_plan.ts passes it), H100_PROFILE's by default.

import type { ConvGeometry, Epilogue } from "./conv2d.ts";
import { H100_PROFILE } from "./device_profile.ts";

export interface GemmTile {
  /** Output channels × output positions per workgroup, and reduction depth per step. */
  tm: number;
  tn: number;
  tk: number;
  /** Outputs per thread: rm channels (1, 2, 4 or 8) × rn positions (multiple of 4). */
  rm: number;
  rn: number;
}

/** One implicit GEMM launch (one group of launches for all groups of the conv). */
export interface ImplicitGemmSpec {
  name: string;
  batch: number;
  groups: number;
  /** Output channels and reduction channels per group. */
  mg: number;
  rg: number;
  /** Input tensor [batch, inC, inH, inW] and output tensor [batch, outC, outH, outW]. */
  inC: number;
  inH: number;
  inW: number;
  outC: number;
  outH: number;
  outW: number;
  /** Output positions computed: Y = oy0 + yy·osy for yy < ny (likewise X). */
  ny: number;
  nx: number;
  oy0: number;
  ox0: number;
  osy: number;
  osx: number;
  /** Input row of (yy, tap row qy): iy = yy·isy + iy0 + qy·iys, qy < nty (likewise x). */
  isy: number;
  isx: number;
  iy0: number;
  ix0: number;
  iys: number;
  ixs: number;
  nty: number;
  ntx: number;
  /** Weight element of (g, m, r, qy, qx): g·wg + m·wm + r·wr + wt0 + qy·wty + qx·wtx. */
  wg: number;
  wm: number;
  wr: number;
  wt0: number;
  wty: number;
  wtx: number;
  epilogue: Epilogue;
  tile: GemmTile;
  /** Split the reduction into this many ranges, each written raw to its own copy of the output
   * ([splits, ...out]) for splitSumKernel to add up and apply the epilogue (default 1). */
  splits?: number;
  /** `wt` is packWeightsKernel's output for this spec ([groups, taps, rg, mg rounded up to 4]),
   * read as one coalesced vec4 per thread instead of four scattered weights (tap-major only). */
  packedWeights?: boolean;
}

/** The tiles pickGemmTile chooses from (exported for tests and sweeps). */
export const GEMM_TILES: Record<string, GemmTile> = {
  t64w: { tm: 64, tn: 256, tk: 8, rm: 8, rn: 8 },
  t64wk16: { tm: 64, tn: 256, tk: 16, rm: 8, rn: 8 },
  t64: { tm: 64, tn: 128, tk: 8, rm: 8, rn: 4 },
  t64r8: { tm: 64, tn: 128, tk: 16, rm: 8, rn: 8 },
  t32w: { tm: 32, tn: 256, tk: 8, rm: 8, rn: 8 },
  t32r8: { tm: 32, tn: 128, tk: 16, rm: 8, rn: 4 },
  t16w: { tm: 16, tn: 256, tk: 8, rm: 4, rn: 8 },
  t16: { tm: 16, tn: 128, tk: 16, rm: 4, rn: 4 },
  t8: { tm: 8, tn: 64, tk: 16, rm: 2, rn: 4 },
};
/** Workgroups that fill the GPU (DeviceProfile.fillWorkgroups): the tuned H100/H200 value
 * unless a profile says otherwise. */
const FILL = H100_PROFILE.fillWorkgroups;

/**
 * Tile for a GEMM with `mg` output channels per group and `positions` output positions (per
 * launch), from sweeps on an H200 (bench/gpu_conv.ts --sweep): the largest tile no taller than
 * the channels need that still launches `fill` workgroups (else the tallest 128-position tile);
 * wide (256-position) tiles lost on the phase-split launches of strided input gradients, so
 * those use 128. Past 32 channels t32r8 comes before t64: where t64w cannot fill the GPU it beat
 * t64 in 9 of 11 sweeps (bench/results/conv_sweep_s5_h200.txt).
 */
export function pickGemmTile(
  mg: number,
  positions = Infinity,
  groups = 1,
  phased = false,
  fill = FILL,
): GemmTile {
  const tm = mg > 32 ? 64 : mg > 16 ? 32 : mg > 8 ? 16 : 8;
  if (tm === 8) return GEMM_TILES.t8;
  const order = tm === 64
    ? ["t64w", "t32r8", "t64", "t16"]
    : tm === 32
    ? ["t32w", "t32r8", "t16"]
    : ["t16w", "t16"];
  const usable = order.filter((k) => !(phased && GEMM_TILES[k].tn > 128));
  for (const k of usable) {
    const t = GEMM_TILES[k];
    if (Math.ceil(positions / t.tn) * Math.ceil(mg / t.tm) * groups >= fill) return t;
  }
  // Too few positions to fill the GPU with any tile: the tallest plain tile keeps the launch
  // (and the software adapter's work) small.
  const plain = usable.map((k) => GEMM_TILES[k]).filter((t) => t.tn === 128);
  return plain.reduce((a, b) => (b.tm > a.tm ? b : a));
}

/** A forward GEMM's tile, reduction splits and whether its weights are packed. */
export interface ForwardGemmPick {
  tile: GemmTile;
  splits: number;
  packed: boolean;
}

/**
 * Tile, reduction splits and weight packing for a forward conv of `rg` channels per group and
 * `taps` kernel taps.
 *
 * Past 8 output channels, where the reduction walks tap-major (whole 16-deep slabs per tap),
 * the weights are packed and the tile is 64×128 (8×8 per thread), 32×128 to 32 channels or
 * 16×128 to 16; the reduction splits (up to 4 ranges, each at least 64 deep) until `fill`
 * workgroups launch. H200 sweep of FC-Siam's stride-2 up-conv input gradients
 * (bench/results/conv_sweep_s6_h200.txt): 0.080 ms at 64 channels against 0.087 for packed
 * 64×256 and 0.103 unpacked; 0.086 at 128 (2 splits) against 0.124 for im2col + GEMM; 0.093
 * at 32 against 0.116 unpacked; 0.116 at 16 against 0.131.
 *
 * Otherwise, past 32 channels where the 64×256 tile launches too few workgroups, the same
 * splits on t64wk16 (0.120 against 0.141 ms unsplit at 64 channels, session 5); else
 * pickGemmTile, unsplit.
 */
export function pickForwardGemm(
  mg: number,
  positions: number,
  groups: number,
  rg: number,
  taps: number,
  fill = FILL,
): ForwardGemmPick {
  const depth = rg * taps;
  const launched = (t: GemmTile) => Math.ceil(positions / t.tn) * Math.ceil(mg / t.tm) * groups;
  const splitsFor = (t: GemmTile) => {
    let splits = 1;
    while (splits < 4 && launched(t) * splits < fill && depth >= (splits + 1) * 64) splits++;
    return splits;
  };
  if (mg > 8 && taps > 1) {
    const tile = mg > 32 ? GEMM_TILES.t64r8 : mg > 16 ? GEMM_TILES.t32r8 : GEMM_TILES.t16;
    if (rg % tile.tk === 0) return { tile, splits: splitsFor(tile), packed: true };
  }
  const wide = GEMM_TILES.t64wk16;
  if (mg > 32) {
    const splits = Math.ceil(fill / launched(wide));
    if (splits > 1 && splits <= 4 && depth >= splits * 64) {
      return { tile: wide, splits, packed: false };
    }
  }
  return { tile: pickGemmTile(mg, positions, groups, false, fill), splits: 1, packed: false };
}

/** The forward convolution as one implicit GEMM (split over the reduction where
 * pickForwardGemm says so for `fill` workgroups, unless a tile is given). */
export function forwardGemmSpec(
  g: ConvGeometry,
  epilogue: Epilogue,
  tile?: GemmTile,
  fill = FILL,
): ImplicitGemmSpec {
  const mg = g.co / g.groups, rg = g.ci / g.groups, taps = g.kh * g.kw;
  const pick = tile
    ? { tile, splits: 1, packed: false }
    : pickForwardGemm(mg, g.batch * g.ho * g.wo, g.groups, rg, taps, fill);
  return {
    name: "conv2d_gemm",
    batch: g.batch,
    groups: g.groups,
    mg,
    rg,
    inC: g.ci,
    inH: g.h,
    inW: g.w,
    outC: g.co,
    outH: g.ho,
    outW: g.wo,
    ny: g.ho,
    nx: g.wo,
    oy0: 0,
    ox0: 0,
    osy: 1,
    osx: 1,
    isy: g.strideY,
    isx: g.strideX,
    iy0: -g.padY,
    ix0: -g.padX,
    iys: g.dilY,
    ixs: g.dilX,
    nty: g.kh,
    ntx: g.kw,
    wg: mg * rg * taps,
    wm: rg * taps,
    wr: taps,
    wt0: 0,
    wty: g.kw,
    wtx: 1,
    epilogue,
    tile: pick.tile,
    splits: pick.splits,
    packedWeights: pick.packed,
  };
}

/** Kernel taps k (0 ≤ k < size) that reach output phase r: (r + pad − k·dil) ≡ 0 (mod stride).
 * They are k0, k0 + step, ...: returns the first, the step and the count, and the input offset
 * (r + pad − k0·dil)/stride of the first. */
export function phaseTaps(
  r: number,
  size: number,
  stride: number,
  pad: number,
  dil: number,
): { k0: number; step: number; count: number; off0: number } {
  const ks: number[] = [];
  for (let k = 0; k < size; k++) {
    if ((((r + pad - k * dil) % stride) + stride) % stride === 0) ks.push(k);
  }
  const step = ks.length > 1 ? ks[1] - ks[0] : 1;
  const k0 = ks[0] ?? 0;
  const off0 = ks.length ? (r + pad - k0 * dil) / stride : 0;
  return { k0, step, count: ks.length, off0 };
}

/** The gradient w.r.t. the input of a convolution (equivalently a transposed convolution of
 * `dy`): one implicit GEMM per output phase, skipping phases with no output position. */
export function dgradGemmSpecs(
  g: ConvGeometry,
  epilogue: Epilogue,
  tile?: GemmTile,
  fill = FILL,
): ImplicitGemmSpec[] {
  const cig = g.ci / g.groups, cog = g.co / g.groups, taps = g.kh * g.kw;
  const specs: ImplicitGemmSpec[] = [];
  for (let ry = 0; ry < Math.min(g.strideY, g.h); ry++) {
    for (let rx = 0; rx < Math.min(g.strideX, g.w); rx++) {
      const ty = phaseTaps(ry, g.kh, g.strideY, g.padY, g.dilY);
      const tx = phaseTaps(rx, g.kw, g.strideX, g.padX, g.dilX);
      specs.push({
        name: "conv2d_dgrad_gemm",
        batch: g.batch,
        groups: g.groups,
        mg: cig,
        rg: cog,
        inC: g.co,
        inH: g.ho,
        inW: g.wo,
        outC: g.ci,
        outH: g.h,
        outW: g.w,
        ny: Math.ceil((g.h - ry) / g.strideY),
        nx: Math.ceil((g.w - rx) / g.strideX),
        oy0: ry,
        ox0: rx,
        osy: g.strideY,
        osx: g.strideX,
        isy: 1,
        isx: 1,
        iy0: ty.off0,
        ix0: tx.off0,
        iys: ty.count > 1 ? -(ty.step * g.dilY) / g.strideY : 0,
        ixs: tx.count > 1 ? -(tx.step * g.dilX) / g.strideX : 0,
        nty: ty.count,
        ntx: tx.count,
        wg: cog * cig * taps,
        wm: taps,
        wr: cig * taps,
        wt0: ty.k0 * g.kw + tx.k0,
        wty: ty.step * g.kw,
        wtx: tx.step,
        epilogue,
        tile: tile ?? pickGemmTile(
          cig,
          g.batch * Math.ceil((g.h - ry) / g.strideY) * Math.ceil((g.w - rx) / g.strideX),
          g.groups,
          g.strideY > 1 || g.strideX > 1,
          fill,
        ),
      });
    }
  }
  return specs;
}
