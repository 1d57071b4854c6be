// 3×3 stride-1 convolution by Winograd F(4×4, 3×3) or F(6×6, 3×3) around the matmul kernel:
// 36 multiplies per 4×4 output tile and channel pair where the direct form has 144 (F(2×2)'s fused
// kernel, conv2d_winograd.ts, has 64 for the same tile), or 64 per 6×6 tile where it has 324.
// Three kernels around one batched GEMM (E = 36 or 64 transform elements):
//   the input transform:  x → V [E, R, T], Bᵀ d B of every tile's α×α patch (shared with the
//                          weight gradient, conv2d_winograd_wgrad.ts);
//   weightTransform:      w → U [E, M, R], G g Gᵀ (transposed and flipped for an input gradient);
//   the GEMM:             P[e] = U[e] · V[e], [E, M, T] (the matmul op's tuned tiles);
//   outputTransform:      P → y, Aᵀ P A per tile with the bias and activation.
// The fused F(2×2) kernel keeps its transforms in shared memory; this one pays V and P in global
// memory (2.25× the input and output for F(4×4), 1.78× for F(6×6)) for a GEMM that runs near the
// matmul kernel's rate, which wins on wide convs at large images (kernels/conv_plan.ts decides,
// and which form). Groups: U, V and P viewed as [E·groups, ·, ·] make one product per (element,
// group). Specs without `tile` are F(4×4).

import { cached, grid1d, type Kernel, kernel, main1d, ro, rw } from "./common.ts";
import { type Epilogue, epilogueBindings, epilogueStore } from "./conv2d.ts";
import { sandwich, winoScheme, type WinoTile, winoTiles } from "./winograd_math.ts";

export interface Winograd4WeightSpec {
  /** Output channels M and reduction channels R per group. */
  m: number;
  r: number;
  groups: number;
  /** Input gradient: g[m][r] = w[r][m] flipped (w is [groups·R, M, 3, 3]); else w is
   * [groups·M, R, 3, 3]. */
  flip: boolean;
  /** F(6×6) (absent: F(4×4)). */
  tile?: WinoTile;
}

/** Kernel names: F(4×4)'s as they always were, F(6×6)'s with a 6. */
const formName = (tile: WinoTile | undefined) => (tile === 6 ? "winograd6" : "winograd4");

/** U[e, groups·M, R] = (G g Gᵀ)[e]: one thread per (output channel, reduction channel). */
function weightTransformGen(s: Winograd4WeightSpec): Kernel {
  const { G, alpha } = winoScheme(s.tile);
  const total = s.groups * s.m * s.r;
  const g = grid1d(total);
  const src = s.flip
    ? `(((mt / ${s.m}u) * ${s.r}u + r) * ${s.m}u + mt % ${s.m}u) * 9u + 8u - `
    : "o * 9u + ";
  const loads: string[] = [];
  for (let a = 0; a < 3; a++) {
    for (let b = 0; b < 3; b++) loads.push(`let w${a}_${b} = w[${src}${a * 3 + b}u];`);
  }
  const stores: string[] = [];
  for (let i = 0; i < alpha; i++) {
    for (let j = 0; j < alpha; j++) {
      stores.push(`u[${(i * alpha + j) * total}u + o] = U${i}_${j};`);
    }
  }
  return kernel(
    `conv2d_${formName(s.tile)}_weights`,
    [ro("w"), rw("u")],
    g.workgroups,
    `${main1d(g.index, total, 256, "o")}
  let mt = o / ${s.r}u;
  let r = o % ${s.r}u;
  ${loads.join("\n  ")}
  ${sandwich("w", "U", G, G, 3)}
  ${stores.join("\n  ")}
}`,
  );
}

export interface Winograd4OutputSpec {
  /** Images of this launch, from image n0 of the output on. */
  batch: number;
  n0: number;
  /** Output channels (all groups) and the output's size. */
  channels: number;
  outH: number;
  outW: number;
  epilogue: Epilogue;
  /** One part of a channel concatenation (engine/ops/conv2d_concat.ts): P holds pChannels
   * channels, this launch transforms channels [pOffset, pOffset + channels) into its output. */
  pChannels?: number;
  pOffset?: number;
  /** P stored in half precision (engine/precision.ts halfStorage). */
  half?: boolean;
  /** F(6×6) (absent: F(4×4)). */
  tile?: WinoTile;
}

/** WGSL storing the tile × tile tile `Y${i}_${j}` of output channel `m` at (y0, x0) of its
 * plane, which starts at `ob`, through the epilogue; positions past the output's edge are
 * skipped. */
export function tileStores(
  ep: Epilogue,
  outH: number,
  outW: number,
  y0: string,
  x0: string,
  tile: WinoTile = 4,
) {
  const stores: string[] = [];
  for (let i = 0; i < tile; i++) {
    for (let j = 0; j < tile; j++) {
      const idx = `ob + u32(${y0} + ${i}) * ${outW}u + u32(${x0} + ${j})`;
      stores.push(
        `if (${y0} + ${i} < ${outH} && ${x0} + ${j} < ${outW}) { ${
          epilogueStore(ep, `Y${i}_${j}`, "m", idx)
        } }`,
      );
    }
  }
  return stores;
}

/** y tile = Aᵀ P[·, m, t] A with the epilogue, P being [E, channels, T]; one thread per
 * (channel, tile), tiles fastest so the reads of P coalesce. */
function outputTransformGen(s: Winograd4OutputSpec): Kernel {
  const { AT, alpha, elements, tile } = winoScheme(s.tile);
  const { th, tw, t: T } = winoTiles(s.batch, s.outH, s.outW, tile);
  const total = s.channels * T;
  const g = grid1d(total);
  const [pTotal, at] = s.pChannels !== undefined
    ? [s.pChannels * T, (s.pOffset ?? 0) * T]
    : [total, 0];
  const loads: string[] = [];
  for (let i = 0; i < alpha; i++) {
    for (let j = 0; j < alpha; j++) {
      const at_ = `pp[${(i * alpha + j) * pTotal + at}u + o]`;
      loads.push(`let p${i}_${j} = ${s.half ? `f32(${at_})` : at_};`);
    }
  }
  const stores = tileStores(s.epilogue, s.outH, s.outW, "y0", "x0", tile);
  const k = kernel(
    `conv2d_${formName(s.tile)}_output`,
    [ro("pp", s.half ? "f16" : "f32"), ...epilogueBindings(s.epilogue)],
    g.workgroups,
    `${main1d(g.index, total, 256, "o")}
  let t = o % ${T}u;
  let m = o / ${T}u;
  let x0 = i32(t % ${tw}u) * ${tile};
  let y0 = i32((t / ${tw}u) % ${th}u) * ${tile};
  let n = t / ${th * tw}u + ${s.n0}u;
  let ob = (n * ${s.channels}u + m) * ${s.outH * s.outW}u;
  ${loads.join("\n  ")}
  ${sandwich("p", "Y", AT, AT, alpha)}
  ${stores.join("\n  ")}
}`,
  );
  // A part reads its slab of P only; a chunk of images writes those images of the output (and
  // of the saved pre-activation), and reads them first where it adds into them.
  const written = 4 * s.batch * s.channels * s.outH * s.outW * (s.epilogue.accumulate ? 2 : 1);
  const epilogueIn = epilogueBindings(s.epilogue).length - 1 - (s.epilogue.savePre ? 1 : 0);
  return {
    ...k,
    touched: [
      (s.half ? 2 : 4) * elements * total,
      ...Array(epilogueIn).fill(null),
      written,
      ...(s.epilogue.savePre ? [written] : []),
    ],
  };
}

/** Elements of U for a weight spec: [E, groups·M, R]. */
export function winograd4WeightShape(s: Winograd4WeightSpec): number[] {
  return [winoScheme(s.tile).elements, s.groups * s.m, s.r];
}

// Generated once per distinct spec (see cached in common.ts).
export const winograd4WeightKernel = cached(weightTransformGen);
export const winograd4OutputKernel = cached(outputTransformGen);
