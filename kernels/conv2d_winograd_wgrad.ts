// Weight gradient of a 3×3 stride-1 convolution by Winograd's F(4×4, 3×3) or F(6×6, 3×3) (Lavin
// & Gray 2016). The forward maps an α×α input patch d (α = 6 or 8) and the filter g to an output
// tile as
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,
// so the filter's gradient, summed over tiles, is
//   dg = Gᵀ [ Σ_tiles (Bᵀ d B) ⊙ (A dY Aᵀ) ] G:
// 36 products per (tile, input channel, output channel) where the direct form has 144 (9 taps ×
// 16 outputs), or 64 where it has 324 for a 6×6 tile. Three kernels around one batched GEMM (the
// matmul op), E = α² elements:
//   wgradInputTransform:  x  → V [E, Ci, T], V = Bᵀ d B of every tile's patch;
//   wgradGradTransform:   dy → W [E, Co, T], W = A dY Aᵀ of every tile;
//   the GEMM:             M[e] = W[e] · V[e]ᵀ, [E, Co, Ci], split over T where it is long;
//   wgradOutputTransform: M  → dw [Co, Ci, 3, 3], Gᵀ M G.
// Grouped convs: V and W viewed as [E·groups, C/groups, T] make the GEMM one product per
// (element, group), and M [E, groups, Co/groups, Ci/groups] is per element dw's own order.
// T counts the output tiles (batch × ⌈Ho/m⌉ × ⌈Wo/m⌉), tile-fastest in V and W so the
// transforms write and the GEMM reads along rows. The forward around the GEMM
// (conv2d_winograd4.ts) uses the input transform as its own. Specs without `tile` are F(4×4).

import { cached, grid1d, type Kernel, kernel, main1d, ro, rw } from "./common.ts";
import type { ConvGeometry } from "./conv2d.ts";
import {
  patchReads,
  sandwich,
  tapFn,
  transpose,
  WINO4_ELEMENTS,
  winoScheme,
  type WinoTile,
  winoTiles,
} from "./winograd_math.ts";

export { WINO4_ELEMENTS };

export interface WinoWgradSpec {
  /** Images transformed by this launch, from image n0 on (the batch goes in chunks when its
   * transformed operands would be too large). */
  batch: number;
  n0: number;
  ci: number;
  co: number;
  groups: number;
  h: number;
  w: number;
  ho: number;
  wo: number;
  padY: number;
  padX: number;
  /** The transform of one part of a channel concatenation (engine/ops/conv2d_concat.ts): its
   * channels (ci, or co on the gradient side) go to channels [dstOffset, dstOffset + channels)
   * of a V (or W) of dstChannels. */
  dstChannels?: number;
  dstOffset?: number;
  /** The transform's output stored in half precision (engine/precision.ts halfStorage). */
  half?: boolean;
  /** F(6×6) (absent: F(4×4)). */
  tile?: WinoTile;
}

export function winoWgradSpec(
  g: ConvGeometry,
  n0 = 0,
  batch = g.batch,
  tile: WinoTile = 4,
): WinoWgradSpec {
  return {
    ...(tile === 6 ? { tile } : {}),
    batch,
    n0,
    ci: g.ci,
    co: g.co,
    groups: g.groups,
    h: g.h,
    w: g.w,
    ho: g.ho,
    wo: g.wo,
    padY: g.padY,
    padX: g.padX,
  };
}

/** Output tiles along y and x, and in all. */
export function winoWgradTiles(s: WinoWgradSpec): { th: number; tw: number; t: number } {
  return winoTiles(s.batch, s.ho, s.wo, s.tile);
}

/** Kernel names: F(4×4)'s as they always were, F(6×6)'s with a 6. */
const formName = (tile: WinoTile | undefined) => (tile === 6 ? "wino6" : "wino4");

/** WGSL decoding tile index t (u32) into n, ty, tx. */
function tileCoords(s: WinoWgradSpec): string {
  const { th, tw } = winoWgradTiles(s);
  return `let tx = i32(t % ${tw}u);
  let ty = i32((t / ${tw}u) % ${th}u);
  let n = t / ${th * tw}u + ${s.n0}u;`;
}

/** The two sides' tile transforms, out[e, c, t] = (L d Lᵀ)[e] of tile t's patch d of channel c
 * (zero outside the source), m the tile edge:
 *   "input": V = Bᵀ d B of the α×α input patch at (m·ty − padY, m·tx − padX);
 *   "grad":  W = A dY Aᵀ of the m×m output-gradient tile at (m·ty, m·tx). */
function tileTransformGen(s: WinoWgradSpec, side: "input" | "grad"): Kernel {
  const input = side === "input";
  const { BT, AT, alpha, elements, tile } = winoScheme(s.tile);
  const [channels, H, W] = input ? [s.ci, s.h, s.w] : [s.co, s.ho, s.wo];
  const [padY, padX] = input ? [s.padY, s.padX] : [0, 0];
  const L = input ? BT : transpose(AT);
  const patch = L[0].length;
  const { t: T } = winoWgradTiles(s);
  const total = channels * T;
  const g = grid1d(total);
  const loads = patchReads(patch, H, W);
  // A part of a concatenation writes its channel slab of the whole V.
  const [dstTotal, at] = s.dstChannels !== undefined
    ? [s.dstChannels * T, (s.dstOffset ?? 0) * T]
    : [total, 0];
  const stores: string[] = [];
  for (let i = 0; i < alpha; i++) {
    for (let j = 0; j < alpha; j++) {
      const v = s.half ? `f16(T${i}_${j})` : `T${i}_${j}`;
      stores.push(`dst[${(i * alpha + j) * dstTotal + at}u + o] = ${v};`);
    }
  }
  const k = kernel(
    `conv2d_wgrad_${formName(s.tile)}_${side}`,
    [ro("src"), rw("dst", s.half ? "f16" : "f32")],
    g.workgroups,
    `${tapFn("src")}
${main1d(g.index, total, 256, "o")}
  let t = o % ${T}u;
  let c = o / ${T}u;
  ${tileCoords(s)}
  let y0 = ty * ${tile} - ${padY};
  let x0 = tx * ${tile} - ${padX};
  let base = (n * ${channels}u + c) * ${H * W}u;
  ${loads.join("\n  ")}
  ${sandwich("d", "T", L, L, patch)}
  ${stores.join("\n  ")}
}`,
  );
  // A chunk of images reads those images of the source; a part writes its slab of V only.
  return {
    ...k,
    touched: [4 * s.batch * channels * H * W, (s.half ? 2 : 4) * elements * total],
  };
}

/** dw[co, ci, 3, 3] = Gᵀ M[·, co, ci] G, M being [E, Co, Ci / groups], or the sum of `splits`
 * such products one after another (the fused kernel's partials, conv2d_winograd4_fused_wgrad.ts,
 * F(4×4) only). */
function outputTransformGen(s: WinoWgradSpec, splits = 1): Kernel {
  const { G, alpha, elements } = winoScheme(s.tile);
  const total = s.co * (s.ci / s.groups);
  const g = grid1d(total);
  const GT = transpose(G);
  const loads: string[] = [];
  if (splits === 1) {
    for (let i = 0; i < alpha; i++) {
      for (let j = 0; j < alpha; j++) {
        loads.push(`let m${i}_${j} = mm[${(i * alpha + j) * total}u + o];`);
      }
    }
  } else {
    const sums: string[] = [];
    for (let i = 0; i < alpha; i++) {
      for (let j = 0; j < alpha; j++) {
        loads.push(`var m${i}_${j} = 0.0;`);
        sums.push(`m${i}_${j} += mm[b + ${(i * alpha + j) * total}u];`);
      }
    }
    loads.push(`for (var sp = 0u; sp < ${splits}u; sp++) {
    let b = sp * ${elements * total}u + o;
    ${sums.join("\n    ")}
  }`);
  }
  const stores: string[] = [];
  for (let a = 0; a < 3; a++) {
    for (let b = 0; b < 3; b++) stores.push(`dw[o * 9u + ${a * 3 + b}u] = D${a}_${b};`);
  }
  return kernel(
    `conv2d_wgrad_${formName(s.tile)}_output`,
    [ro("mm"), rw("dw")],
    g.workgroups,
    `${main1d(g.index, total, 256, "o")}
  ${loads.join("\n  ")}
  ${sandwich("m", "D", GT, GT, alpha)}
  ${stores.join("\n  ")}
}`,
  );
}

/** Bytes of the larger transformed operand per image. */
export function winoWgradBytesPerImage(g: ConvGeometry, tile: WinoTile = 4): number {
  const { elements } = winoScheme(tile);
  return elements * Math.max(g.ci, g.co) * winoTiles(1, g.ho, g.wo, tile).t * 4;
}

// Generated once per distinct spec (see cached in common.ts).
const tileTransformKernel = cached(tileTransformGen);
export const wgradInputTransformKernel = (s: WinoWgradSpec) => tileTransformKernel(s, "input");
export const wgradGradTransformKernel = (s: WinoWgradSpec) => tileTransformKernel(s, "grad");
export const wgradOutputTransformKernel = cached(outputTransformGen);
