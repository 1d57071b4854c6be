// 3×3 stride-1 convolution by Winograd F(4×4, 3×3) in one kernel, for narrow convs: the F(4×4)
// route around the GEMM (conv2d_winograd4.ts) writes the transformed input V and product P to
// global memory and reads them back, 4.5× the bytes a conv must move at least, which bounds it
// on narrow channels at large images (bench/results/roofline_h100_s15.md: 16→16 at 512² ran
// 1.72 ms where its arithmetic needs 0.06). Here V lives in shared memory and P in registers:
//   a workgroup holds 64 output tiles × 16 output channels; per slab of CK input channels,
//   half its threads transform one tile's 6×6 patch each (Bᵀ d B) into shared memory and all
//   load the slab of U (the weight transform, conv2d_winograd4.ts's [36, M, R]); then each
//   thread adds, for its tile and 4 output channels, all 36 products (36 vec4 accumulators);
//   at the end it applies Aᵀ P A per channel, the bias and activation, and stores the 4×4 tile.
// The transform is paid once per tile and input channel for 16 output channels, so wide convs
// keep the GEMM route (kernels/conv_plan.ts decides; one group only). The input may be the parts
// of a channel concatenation and the output (without an epilogue) written as such parts, one
// binding each (engine/ops/conv2d_concat.ts).

import { cached, type Kernel, kernel, ro, rw } from "./common.ts";
import { epilogueBindings } from "./conv2d.ts";
import type { WinogradSpec } from "./conv2d_winograd.ts";
import { tileStores } from "./conv2d_winograd4.ts";
import {
  AT,
  BT,
  partPatchReads,
  patchReads,
  sandwich,
  tapFn,
  TILE,
  tilesF4,
  WINO4_ELEMENTS,
} from "./winograd_math.ts";

/** The conv this launch computes (as conv2d_winograd.ts's spec, one group, no tile choice);
 * inParts / outParts: the input's / output's channels as the parts of a concatenation. */
export type Winograd4FusedSpec = Omit<WinogradSpec, "name" | "groups" | "tm"> & {
  inParts?: number[];
  outParts?: number[];
};

/** Tiles and output channels per workgroup, input channels per shared-memory slab. */
export const FUSED_TILES = 64;
export const FUSED_CHANNELS = 16;
const CK = 2;
const MB = 4; // output channels per thread (one vec4 accumulator per transform element)
const THREADS = FUSED_TILES * (FUSED_CHANNELS / MB);

/** Workgroups along x (tiles) and y (output channels). */
export function winograd4FusedGrid(s: Winograd4FusedSpec): [number, number, number] {
  const { t } = tilesF4(s.batch, s.outH, s.outW);
  return [Math.ceil(t / FUSED_TILES), Math.ceil(s.m / FUSED_CHANNELS), 1];
}

function fusedGen(s: Winograd4FusedSpec): Kernel {
  const { th, tw, t: T } = tilesF4(s.batch, s.outH, s.outW);
  const grid = winograd4FusedGrid(s);
  if (grid[0] > 65535) {
    throw new Error(`conv2d_winograd4_fused: ${T} tiles need ${grid[0]} workgroups (max 65535)`);
  }
  const E = WINO4_ELEMENTS;
  if (s.outParts && (s.epilogue.bias || s.epilogue.activation !== "none" || s.epilogue.savePre)) {
    throw new Error("conv2d_winograd4_fused: output parts take no epilogue");
  }
  const taps = s.inParts ? partPatchReads(s.inParts, 6, s.inH, s.inW, "ok") : [
    `let base = (n * ${s.r}u + min(c, ${s.r - 1}u)) * ${s.inH * s.inW}u;`,
    ...patchReads(6, s.inH, s.inW, "ok"),
  ];
  const vStores: string[] = [];
  for (let i = 0; i < 6; i++) {
    for (let j = 0; j < 6; j++) vStores.push(`vs[ck * ${E}u + ${i * 6 + j}u][tl] = V${i}_${j};`);
  }
  const acc = Array.from({ length: E }, (_, e) => `var a${e} = vec4<f32>(0.0);`);
  const fma: string[] = [];
  for (let ck = 0; ck < CK; ck++) {
    for (let e = 0; e < E; e++) {
      const row = ck * E + e;
      fma.push(`a${e} = fma(us[${row}][mb], vec4<f32>(vs[${row}][tl]), a${e});`);
    }
  }
  const outs: string[] = [];
  const comp = ["x", "y", "z", "w"];
  for (let j = 0; j < MB; j++) {
    const p: string[] = [];
    for (let i = 0; i < 6; i++) {
      for (let k = 0; k < 6; k++) p.push(`let p${i}_${k} = a${i * 6 + k}.${comp[j]};`);
    }
    const stores = tileStores(s.epilogue, s.outH, s.outW, "oy", "ox");
    outs.push(`{
    let m = m0 + ${j}u;
    if (m < ${s.m}u) {
      ${p.join("\n      ")}
      ${sandwich("p", "Y", AT, AT, 6)}
      ${
      s.outParts
        ? partStores(s.outParts, s.outH * s.outW, stores)
        : `let ob = (n * ${s.m}u + m) * ${s.outH * s.outW}u;
      ${stores.join("\n      ")}`
    }
    }
  }`);
  }
  const uLoads = Math.ceil((CK * E * (FUSED_CHANNELS / MB)) / THREADS);
  const inputs = s.inParts ? s.inParts.map((_, k) => ro(`x${k}`)) : [ro("x")];
  const outputs = s.outParts
    ? s.outParts.map((_, k) => rw(`out${k}`))
    : epilogueBindings(s.epilogue);
  const tapFns = s.inParts ? s.inParts.map((_, k) => tapFn(`x${k}`, `tap${k}`)) : [tapFn("x")];
  return kernel(
    "conv2d_winograd4_fused",
    [...inputs, ro("u"), ...outputs],
    grid,
    `var<workgroup> vs: array<array<f32, ${FUSED_TILES}>, ${CK * E}>;
var<workgroup> us: array<array<vec4<f32>, ${FUSED_CHANNELS / MB}>, ${CK * E}>;
${tapFns.join("\n")}
fn uAt(e: u32, m: u32, c: u32) -> f32 {
  if (m >= ${s.m}u || c >= ${s.r}u) { return 0.0; }
  return u[(e * ${s.m}u + m) * ${s.r}u + c];
}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tl = lid % ${FUSED_TILES}u;
  let mb = lid / ${FUSED_TILES}u;
  let t = wid.x * ${FUSED_TILES}u + tl;
  let m0 = wid.y * ${FUSED_CHANNELS}u + mb * ${MB}u;
  let tc = min(t, ${T - 1}u);
  let ox = i32(tc % ${tw}u) * ${TILE};
  let oy = i32((tc / ${tw}u) % ${th}u) * ${TILE};
  let n = tc / ${th * tw}u;
  let x0 = ox - ${s.padX};
  let y0 = oy - ${s.padY};
  ${acc.join("\n  ")}
  for (var c0 = 0u; c0 < ${s.r}u; c0 += ${CK}u) {
    if (lid < ${FUSED_TILES * CK}u) {
      let ck = lid / ${FUSED_TILES}u;
      let c = c0 + ck;
      let ok = c < ${s.r}u && t < ${T}u;
      ${taps.join("\n      ")}
      ${sandwich("d", "V", BT, BT, 6)}
      ${vStores.join("\n      ")}
    }
    for (var q = 0u; q < ${uLoads}u; q++) {
      let i = lid + q * ${THREADS}u;
      if (i < ${CK * E * (FUSED_CHANNELS / MB)}u) {
        let row = i / ${FUSED_CHANNELS / MB}u;
        let blk = i % ${FUSED_CHANNELS / MB}u;
        let e = row % ${E}u;
        let c = c0 + row / ${E}u;
        let mm = wid.y * ${FUSED_CHANNELS}u + blk * ${MB}u;
        us[row][blk] = vec4<f32>(uAt(e, mm, c), uAt(e, mm + 1u, c), uAt(e, mm + 2u, c), uAt(e, mm + 3u, c));
      }
    }
    workgroupBarrier();
    ${fma.join("\n    ")}
    workgroupBarrier();
  }
  if (t >= ${T}u) { return; }
  ${outs.join("\n  ")}
}`,
  );
}

/** The tile stores of output channel `m` when the output is the parts of a concatenation
 * (`out${k}`, parts[k] channels each): the part holding m, at its own channel. */
function partStores(parts: readonly number[], plane: number, stores: string[]): string {
  let start = 0;
  const blocks = parts.map((channels, k) => {
    const head = k === 0
      ? `if (m < ${start + channels}u) {`
      : k === parts.length - 1
      ? "} else {"
      : `} else if (m < ${start + channels}u) {`;
    const body = [
      `let ob = (n * ${channels}u + m - ${start}u) * ${plane}u;`,
      ...stores.map((l) => l.replaceAll("out[", `out${k}[`)),
    ];
    start += channels;
    return [parts.length === 1 ? "{" : head, ...body].join("\n        ");
  });
  return blocks.join("\n      ") + "\n      }";
}

export const winograd4FusedKernel = cached(fusedGen);
