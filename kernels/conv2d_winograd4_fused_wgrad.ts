// Weight gradient of a narrow 3×3 stride-1 convolution by Winograd F(4×4, 3×3) without its
// transformed operands in global memory. The route around the GEMM (conv2d_winograd_wgrad.ts)
// writes V = Bᵀ d B of every input patch and W = A dY Aᵀ of every output-gradient tile, 36/16 of
// each operand, and reads them back: on 16→16 at 512² that is 4.5× the bytes x and dy take
// (bench/roofline.ts). Here both live in shared memory for a slab of tiles at a time:
//   a workgroup holds 16 input × 16 output channels and one split of the tiles; per slab of
//   SLAB tiles its threads transform the slab's input patches and gradient tiles (one each)
//   into shared memory, then each thread adds, for its transform element e and an 8×8 block of
//   channel pairs, Σ_tiles V[e, ci] · W[e, co] (16 vec4 accumulators);
//   at the end every thread writes its 64 partial sums, partials [splits, 36, Co, Ci], and
//   wgradOutputTransformKernel sums the splits and applies Gᵀ M G.
// Each input patch is transformed once per 16 output channels (and each gradient tile once per
// 16 input channels), so wide convs keep the GEMM route (kernels/conv_plan.ts decides; one
// group only). x may be the parts of a channel concatenation, one binding each
// (engine/ops/conv2d_concat.ts).

import { cached, type Kernel, kernel, ro, rw } from "./common.ts";
import type { WinoWgradSpec } from "./conv2d_winograd_wgrad.ts";
import {
  AT,
  BT,
  partPatchReads,
  patchReads,
  sandwich,
  tapFn,
  TILE,
  tilesF4,
  transpose,
  WINO4_ELEMENTS,
} from "./winograd_math.ts";

/** The unfused weight gradient's conv (all images, one group), split over the tiles. */
export interface FusedWgradSpec
  extends Pick<WinoWgradSpec, "batch" | "ci" | "co" | "h" | "w" | "ho" | "wo" | "padY" | "padX"> {
  /** Workgroups along the tiles, each taking `chunk` consecutive tiles (a multiple of SLAB). */
  splits: number;
  chunk: number;
  /** x's (dy's) channels as the parts of a concatenation (bindings x0, x1, … / dy0, dy1, …). */
  inParts?: number[];
  gradParts?: number[];
}

/** Input and output channels per workgroup, tiles per shared-memory slab. */
export const FUSED_WGRAD_CHANNELS = 16;
export const FUSED_WGRAD_SLAB = 4;
const C = FUSED_WGRAD_CHANNELS, SLAB = FUSED_WGRAD_SLAB, E = WINO4_ELEMENTS;
/** One thread per transform element and 8×8 block of the 16×16 channel pairs. */
const THREADS = E * 4;

/** Workgroups: tile splits, input-channel blocks, output-channel blocks. */
export function fusedWgradGrid(s: FusedWgradSpec): [number, number, number] {
  return [s.splits, Math.ceil(s.ci / C), Math.ceil(s.co / C)];
}

function fusedWgradGen(s: FusedWgradSpec): Kernel {
  const { th, tw, t: T } = tilesF4(s.batch, s.ho, s.wo);
  if (s.chunk % SLAB !== 0) {
    throw new Error(`fused wgrad: chunk ${s.chunk} not a multiple of ${SLAB}`);
  }
  if (s.splits * s.chunk < T) throw new Error(`fused wgrad: ${s.splits}×${s.chunk} < ${T} tiles`);
  const grid = fusedWgradGrid(s);
  if (grid[0] > 65535) throw new Error(`fused wgrad: ${grid[0]} splits (max 65535)`);
  // Shared rows are (element, tile of the slab), 16 channels as 4 vec4.
  const store = (arr: string, name: string) => {
    const lines: string[] = [];
    for (let i = 0; i < 6; i++) {
      for (let j = 0; j < 6; j++) {
        lines.push(`${arr}[${i * 6 + j}u * ${SLAB}u + tt][cl / 4u][cl % 4u] = ${name}${i}_${j};`);
      }
    }
    return lines.join("\n      ");
  };
  const acc: string[] = [];
  const fma: string[] = [];
  const outs: string[] = [];
  const comp = ["x", "y", "z", "w"];
  for (let c = 0; c < 8; c++) {
    for (let k = 0; k < 2; k++) {
      acc.push(`var a${c}_${k} = vec4<f32>(0.0);`);
      fma.push(`a${c}_${k} = fma(vec4<f32>(va${c >> 2}.${comp[c & 3]}), wb${k}, a${c}_${k});`);
      for (let q = 0; q < 4; q++) {
        outs.push(`put(ci0 + ${c}u, co0 + ${k * 4 + q}u, pb, a${c}_${k}.${comp[q]});`);
      }
    }
  }
  const xReads = s.inParts ? partPatchReads(s.inParts, 6, s.h, s.w, "ok") : [
    `let base = (n * ${s.ci}u + min(c, ${s.ci - 1}u)) * ${s.h * s.w}u;`,
    ...patchReads(6, s.h, s.w, "ok", "tapX"),
  ];
  const gReads = s.gradParts ? partPatchReads(s.gradParts, 4, s.ho, s.wo, "ok", "tapG") : [
    `let base = (n * ${s.co}u + min(c, ${s.co - 1}u)) * ${s.ho * s.wo}u;`,
    ...patchReads(4, s.ho, s.wo, "ok", "tapG"),
  ];
  const xs = s.inParts ? s.inParts.map((_, k) => ro(`x${k}`)) : [ro("x")];
  const gs = s.gradParts ? s.gradParts.map((_, k) => ro(`dy${k}`)) : [ro("dy")];
  const gTaps = s.gradParts
    ? s.gradParts.map((_, k) => tapFn(`dy${k}`, `tapG${k}`))
    : [tapFn("dy", "tapG")];
  const xTaps = s.inParts
    ? s.inParts.map((_, k) => tapFn(`x${k}`, `tap${k}`))
    : [tapFn("x", "tapX")];
  return kernel(
    "conv2d_wgrad_wino4_fused",
    [...xs, ...gs, rw("part")],
    grid,
    `var<workgroup> vs: array<array<vec4<f32>, ${C / 4}>, ${E * SLAB}>;
var<workgroup> ws: array<array<vec4<f32>, ${C / 4}>, ${E * SLAB}>;
${xTaps.join("\n")}
${gTaps.join("\n")}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = lid / 4u;
  let bi = (lid / 2u) % 2u;
  let bj = lid % 2u;
  let tBegin = wid.x * ${s.chunk}u;
  let tEnd = min(tBegin + ${s.chunk}u, ${T}u);
  ${acc.join("\n  ")}
  for (var t0 = tBegin; t0 < tEnd; t0 += ${SLAB}u) {
    for (var q = lid; q < ${2 * C * SLAB}u; q += ${THREADS}u) {
      let side = q / ${C * SLAB}u;
      let tt = q % ${SLAB}u;
      let cl = (q / ${SLAB}u) % ${C}u;
      let t = t0 + tt;
      let tc = min(t, ${T - 1}u);
      let ox = i32(tc % ${tw}u) * ${TILE};
      let oy = i32((tc / ${tw}u) % ${th}u) * ${TILE};
      let n = tc / ${th * tw}u;
      if (side == 0u) {
        let c = wid.y * ${C}u + cl;
        let ok = c < ${s.ci}u && t < tEnd;
        let y0 = oy - ${s.padY};
        let x0 = ox - ${s.padX};
        ${xReads.join("\n        ")}
        ${sandwich("d", "V", BT, BT, 6)}
        ${store("vs", "V")}
      } else {
        let c = wid.z * ${C}u + cl;
        let ok = c < ${s.co}u && t < tEnd;
        let y0 = oy;
        let x0 = ox;
        ${gReads.join("\n        ")}
        ${sandwich("d", "W", transpose(AT), transpose(AT), 4)}
        ${store("ws", "W")}
      }
    }
    workgroupBarrier();
    for (var tt = 0u; tt < ${SLAB}u; tt++) {
      let row = e * ${SLAB}u + tt;
      let va0 = vs[row][bi * 2u];
      let va1 = vs[row][bi * 2u + 1u];
      let wb0 = ws[row][bj * 2u];
      let wb1 = ws[row][bj * 2u + 1u];
      ${fma.join("\n      ")}
    }
    workgroupBarrier();
  }
  let ci0 = wid.y * ${C}u + bi * 8u;
  let co0 = wid.z * ${C}u + bj * 8u;
  let pb = (wid.x * ${E}u + e) * ${s.co}u;
  ${outs.join("\n  ")}
}

fn put(ci: u32, co: u32, pb: u32, v: f32) {
  if (ci < ${s.ci}u && co < ${s.co}u) { part[(pb + co) * ${s.ci}u + ci] = v; }
}`,
  );
}

export const fusedWgradKernel = cached(fusedWgradGen);
