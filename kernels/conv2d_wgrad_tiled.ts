// Weight (and bias) gradient of a stride-1 convolution (one group, kernel up to 3×3) from
// spatial tiles: dW[co, ci, ky, kx] = Σ dy[b, co, y, x] · x[b, ci, y + ky − pad, x + kx − pad].
// A workgroup owns tm output × tc input channels and walks a chunk of TH×TW output tiles; per
// tile it stages dy (tm × TH × TW) and x with its halo (tc × (TH+kh−1) × (TW+kw−1)) in shared
// memory once, so each input value is read from global memory once rather than once per tap
// (as the GEMM gather does). A thread holds every tap of 4 output × rc input channels in
// registers and slides along a row: per position one dy vec4 and kh·rc new inputs feed
// kh·kw·rc vec4 FMAs. Thread groups take different rows and are summed in shared memory at the
// end; chunks write partials [split, Co, K(+1)] for splitReduceKernel, as the GEMM does.

import { cached, type Kernel } from "./common.ts";
import type { ConvGeometry } from "./conv2d.ts";

export interface WgradTiledTile {
  /** Output channels (multiple of 4) and input channels per workgroup. */
  tm: number;
  tc: number;
  /** Input channels per thread. */
  rc: number;
  /** Tile width, and rows per thread group (the tile is groups·r rows tall). */
  tw: number;
  r: number;
  /** Threads per workgroup. */
  nt: number;
}

export interface WgradTiledSpec {
  geom: ConvGeometry;
  bias: boolean;
  splits: number;
  /** Tiles (b, tile row, tile column) per split. */
  chunk: number;
  tile: WgradTiledTile;
}

/** Stride 1, no dilation, one group, kernel at most 3×3. */
export function wgradIsTiled(g: ConvGeometry): boolean {
  return g.groups === 1 && g.strideY === 1 && g.strideX === 1 && g.dilY === 1 &&
    g.dilX === 1 && g.kh <= 3 && g.kw <= 3;
}

/** Tiles the picker chooses from (exported for tests and sweeps). */
export const WGRAD_TILED_TILES: Record<string, WgradTiledTile> = {
  m16c16: { tm: 16, tc: 16, rc: 2, tw: 16, r: 1, nt: 256 },
  m32c16: { tm: 32, tc: 16, rc: 2, tw: 16, r: 2, nt: 256 },
  m64c16: { tm: 64, tc: 16, rc: 2, tw: 16, r: 2, nt: 256 },
  m32c32: { tm: 32, tc: 32, rc: 2, tw: 16, r: 2, nt: 256 },
  m16c4: { tm: 16, tc: 4, rc: 1, tw: 16, r: 1, nt: 256 },
  m8c8: { tm: 8, tc: 8, rc: 2, tw: 16, r: 1, nt: 64 },
};

export function pickWgradTiledTile(g: ConvGeometry): WgradTiledTile {
  if (g.ci <= 4) return WGRAD_TILED_TILES.m16c4;
  if (g.co <= 8 && g.ci <= 8) return WGRAD_TILED_TILES.m8c8;
  if (g.co <= 16) return WGRAD_TILED_TILES.m16c16;
  if (g.co <= 32) return WGRAD_TILED_TILES.m32c16;
  return WGRAD_TILED_TILES.m64c16;
}

export function tiledGeometry(g: ConvGeometry, t: WgradTiledTile) {
  const combos = (t.tm / 4) * (t.tc / t.rc);
  const groups = t.nt / combos;
  const th = groups * t.r;
  const tiles = g.batch * Math.ceil(g.ho / th) * Math.ceil(g.wo / t.tw);
  const pairs = Math.ceil(g.co / t.tm) * Math.ceil(g.ci / t.tc);
  return { combos, groups, th, tiles, pairs };
}

/** Splits: about 1024 workgroups in all, at least 4 tiles each. */
export function pickTiledSplits(g: ConvGeometry, t: WgradTiledTile): {
  splits: number;
  chunk: number;
} {
  const { tiles, pairs } = tiledGeometry(g, t);
  const splits = Math.max(1, Math.min(Math.ceil(tiles / 4), Math.round(1024 / pairs), 65535));
  const chunk = Math.ceil(tiles / splits);
  return { splits: Math.ceil(tiles / chunk), chunk };
}

function wgradTiledKernelGen(s: WgradTiledSpec): Kernel {
  const g = s.geom;
  const { tm, tc, rc, tw, r, nt } = s.tile;
  const { combos, groups: G, th } = tiledGeometry(g, s.tile);
  if (tm % 4 || tc % rc || !Number.isInteger(G) || G < 1 || r * tw * (tm / 4) < combos) {
    throw new Error(`conv wgrad tiled: bad tile ${JSON.stringify(s.tile)}`);
  }
  if (!wgradIsTiled(g)) throw new Error("conv wgrad tiled: needs stride 1, one group, k ≤ 3");
  const { kh, kw } = g;
  const taps = kh * kw, cols = g.ci * taps, cols1 = cols + (s.bias ? 1 : 0);
  const tm4 = tm / 4, tcr = tc / rc;
  const xh = th + kh - 1, xw = tw + kw - 1;
  const ps = (xh * xw) % 2 === 0 ? xh * xw + 1 : xh * xw; // odd plane stride: fewer conflicts
  const tilesX = Math.ceil(g.wo / tw), tilesY = Math.ceil(g.ho / th);
  const ciTiles = Math.ceil(g.ci / tc);
  const dsLen = th * tw * tm4;

  // Per position x of the row: one dy vec4, kh·rc new inputs, kh·kw·rc FMAs.
  const accs: string[] = [];
  for (let c = 0; c < rc; c++) {
    for (let t = 0; t < taps; t++) accs.push(`var acc${c}_${t} = vec4<f32>(0.0);`);
  }
  const row: string[] = [];
  for (let c = 0; c < rc; c++) {
    for (let ky = 0; ky < kh; ky++) {
      row.push(`let xb${c}_${ky} = (cj * ${rc}u + ${c}u) * ${ps}u + (y + ${ky}u) * ${xw}u;`);
      for (let j = 0; j < kw - 1; j++) row.push(`let v${c}_${ky}_${j} = Xs[xb${c}_${ky} + ${j}u];`);
    }
  }
  for (let x = 0; x < tw; x++) {
    row.push(`let d${x} = Ds[db + ${x * tm4}u];`);
    if (s.bias) row.push(`accB += d${x};`);
    for (let c = 0; c < rc; c++) {
      for (let ky = 0; ky < kh; ky++) {
        const j = x + kw - 1;
        row.push(`let v${c}_${ky}_${j} = Xs[xb${c}_${ky} + ${j}u];`);
        for (let kx = 0; kx < kw; kx++) {
          const a = `acc${c}_${ky * kw + kx}`;
          row.push(`${a} = fma(d${x}, vec4<f32>(v${c}_${ky}_${x + kx}), ${a});`);
        }
      }
    }
  }

  // Sum the G thread groups' registers through Ds, then write this split's partials.
  const reduce = (acc: string, write: string) =>
    `Ds[lid] = ${acc};
  workgroupBarrier();
  if (grp == 0u) {
    var t = Ds[lid];
    for (var q = 1u; q < ${G}u; q++) { t += Ds[lid + q * ${combos}u]; }
    ${write}
  }
  workgroupBarrier();`;
  const writes: string[] = [];
  for (let c = 0; c < rc; c++) {
    for (let t = 0; t < taps; t++) {
      writes.push(reduce(
        `acc${c}_${t}`,
        `let ci = ci0 + cj * ${rc}u + ${c}u;
    if (ci < ${g.ci}u) {
      for (var l = 0u; l < 4u; l++) {
        if (co + l < ${g.co}u) { part[pb + (co + l) * ${cols1}u + ci * ${taps}u + ${t}u] = t[l]; }
      }
    }`,
      ));
    }
  }
  if (s.bias) {
    writes.push(reduce(
      "accB",
      `if (cj == 0u && ci0 == 0u) {
      for (var l = 0u; l < 4u; l++) {
        if (co + l < ${g.co}u) { part[pb + (co + l) * ${cols1}u + ${cols}u] = t[l]; }
      }
    }`,
    ));
  }

  const code = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
var<workgroup> Ds: array<vec4<f32>, ${dsLen}>;
var<workgroup> Xs: array<f32, ${tc * ps}>;
@compute @workgroup_size(${nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let co0 = (wid.x / ${ciTiles}u) * ${tm}u;
  let ci0 = (wid.x % ${ciTiles}u) * ${tc}u;
  let split = wid.y;
  let mi = lid % ${tm4}u;
  let cj = (lid / ${tm4}u) % ${tcr}u;
  let grp = lid / ${combos}u;
  let co = co0 + mi * 4u;
  ${accs.join("\n  ")}
  ${s.bias ? "var accB = vec4<f32>(0.0);" : ""}
  let tEnd = min((split + 1u) * ${s.chunk}u, ${tiles(g, th, tw)}u);
  for (var tile = split * ${s.chunk}u; tile < tEnd; tile++) {
    let b = tile / ${tilesX * tilesY}u;
    let y0 = i32(((tile / ${tilesX}u) % ${tilesY}u) * ${th}u);
    let x0 = i32((tile % ${tilesX}u) * ${tw}u);
    workgroupBarrier();
    for (var e = lid; e < ${tm * th * tw}u; e += ${nt}u) {
      let m = e / ${th * tw}u;
      let p = e % ${th * tw}u;
      let oy = y0 + i32(p / ${tw}u);
      let ox = x0 + i32(p % ${tw}u);
      let ok = co0 + m < ${g.co}u && oy < ${g.ho} && ox < ${g.wo};
      let v = dy[select(0u, ((b * ${g.co}u + co0 + m) * ${g.ho}u + u32(oy)) * ${g.wo}u + u32(ox), ok)];
      Ds[p * ${tm4}u + m / 4u][m % 4u] = select(0.0, v, ok);
    }
    for (var e = lid; e < ${tc * xh * xw}u; e += ${nt}u) {
      let c = e / ${xh * xw}u;
      let p = e % ${xh * xw}u;
      let iy = y0 + i32(p / ${xw}u) - ${g.padY};
      let ix = x0 + i32(p % ${xw}u) - ${g.padX};
      let ok = ci0 + c < ${g.ci}u && u32(iy) < ${g.h}u && u32(ix) < ${g.w}u;
      let v = x[select(0u, ((b * ${g.ci}u + ci0 + c) * ${g.h}u + u32(iy)) * ${g.w}u + u32(ix), ok)];
      Xs[c * ${ps}u + p] = select(0.0, v, ok);
    }
    workgroupBarrier();
    for (var rr = 0u; rr < ${r}u; rr++) {
      let y = grp * ${r}u + rr;
      let db = y * ${tw * tm4}u + mi;
      ${row.join("\n      ")}
    }
  }
  let pb = split * ${g.co * cols1}u;
  workgroupBarrier();
  ${writes.join("\n  ")}
}`;
  return {
    name: "conv2d_wgrad_tiled",
    code,
    workgroups: [Math.ceil(g.co / tm) * ciTiles, s.splits, 1],
  };
}

function tiles(g: ConvGeometry, th: number, tw: number): number {
  return g.batch * Math.ceil(g.ho / th) * Math.ceil(g.wo / tw);
}

// Generated once per distinct spec (see cached in common.ts).
export const wgradTiledKernel = cached(wgradTiledKernelGen);
