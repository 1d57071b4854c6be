// 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray 2016):
// every 2×2 output tile comes from a 4×4 input patch d and the 3×3 filter g as
//   Y = Aᵀ [ Σ_r (G g Gᵀ) ⊙ (Bᵀ d B) ] A,
// 16 multiplies per (tile, input channel, output channel) instead of 36: the sum over input
// channels is 16 independent GEMMs, one per element of the 4×4 transform.
//
// winogradWeightKernel turns the filters into U [16, R, Mp] once per call (Mp: M rounded up to
// a multiple of the tile, zero filled). The main kernel fuses the rest: per slab of CK input
// channels a workgroup transforms its TN tiles' patches into shared memory (each thread one
// (tile, channel) patch), loads the slab of U, and each thread accumulates one transform
// element for 8 output channels × 8 tiles; at the end the 16 elements of each (channel, tile)
// meet in shared memory for the output transform, the bias and activation.
// The same kernel computes a stride-1 conv's input gradient: a conv of dy with the filters
// transposed and flipped, padded by 2 − pad (the `flip` of the weight transform).

import { cached, type Kernel, MAX_GROUPS } from "./common.ts";
import { type ConvGeometry, type Epilogue, epilogueInputs, epilogueStore } from "./conv2d.ts";

export interface WinogradSpec {
  name: string;
  batch: number;
  /** Output channels M and reduction channels R (one group). */
  m: number;
  r: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  /** Input row of output row oy and tap ky: oy − padY + ky (likewise x). */
  padY: number;
  padX: number;
  epilogue: Epilogue;
  /** Output channels per workgroup (16 or 32); tiles per workgroup = 1024 / tm. */
  tm: number;
}

export interface WinogradWeightSpec {
  m: number;
  r: number;
  /** M rounded up to the tile. */
  mp: number;
  /** Input gradient: g[m][r] = w[r][m] flipped in both axes (w is [R, M, 3, 3]); else w is
   * [M, R, 3, 3]. */
  flip: boolean;
}

/** A 3×3, stride-1, undilated, ungrouped conv with enough channels for the transforms to pay. */
export function winogradFits(g: ConvGeometry): boolean {
  return g.kh === 3 && g.kw === 3 && g.strideY === 1 && g.strideX === 1 && g.dilY === 1 &&
    g.dilX === 1 && g.groups === 1 && g.ci >= 8 && g.co >= 8;
}

/** The input gradient of such a conv runs on Winograd too (its padding becomes 2 − pad). */
export function winogradFitsDgrad(g: ConvGeometry): boolean {
  return winogradFits(g) && g.padY <= 2 && g.padX <= 2;
}

/** Output channels per workgroup: 16 (64 tiles) matched or beat 32 (32 tiles) on every
 * FC-Siam layer in an H200 sweep (bench/gpu_conv.ts --sweep), up to 128 channels. */
export function winogradTile(_m: number): number {
  return 16;
}

export function paddedChannels(m: number, tm: number): number {
  return Math.ceil(m / tm) * tm;
}

export function forwardWinogradSpec(g: ConvGeometry, epilogue: Epilogue): WinogradSpec {
  return {
    name: "conv2d_winograd",
    batch: g.batch,
    m: g.co,
    r: g.ci,
    inH: g.h,
    inW: g.w,
    outH: g.ho,
    outW: g.wo,
    padY: g.padY,
    padX: g.padX,
    epilogue,
    tm: winogradTile(g.co),
  };
}

export function dgradWinogradSpec(g: ConvGeometry, epilogue: Epilogue): WinogradSpec {
  return {
    name: "conv2d_dgrad_winograd",
    batch: g.batch,
    m: g.ci,
    r: g.co,
    inH: g.ho,
    inW: g.wo,
    outH: g.h,
    outW: g.w,
    padY: 2 - g.padY,
    padX: 2 - g.padX,
    epilogue,
    tm: winogradTile(g.ci),
  };
}

/** U[e, r, m] = (G g Gᵀ)[e] for e = 4·i + j; one thread per (r, m) of the padded range. */
function winogradWeightKernelGen(s: WinogradWeightSpec): Kernel {
  const n = s.r * s.mp;
  const groups = Math.ceil(n / 256);
  const src = s.flip ? `(r * ${s.m}u + m) * 9u + 8u - t` : `(m * ${s.r}u + r) * 9u + t`;
  const gl = [0, 1, 2].flatMap((a) =>
    [0, 1, 2].map((c) => `let g${a}${c} = wl(r, m, ${a * 3 + c}u);`)
  );
  // t = G g (4×3), then U = t Gᵀ (4×4).
  const tRows = [0, 1, 2].map((c) =>
    `let t0${c} = g0${c};
  let t1${c} = 0.5 * (g0${c} + g1${c} + g2${c});
  let t2${c} = 0.5 * (g0${c} - g1${c} + g2${c});
  let t3${c} = g2${c};`
  );
  const stores = [0, 1, 2, 3].map((i) =>
    `u[${4 * i}u * ${n}u + o] = t${i}0;
  u[${4 * i + 1}u * ${n}u + o] = 0.5 * (t${i}0 + t${i}1 + t${i}2);
  u[${4 * i + 2}u * ${n}u + o] = 0.5 * (t${i}0 - t${i}1 + t${i}2);
  u[${4 * i + 3}u * ${n}u + o] = t${i}2;`
  );
  return {
    name: "conv2d_winograd_weights",
    workgroups: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    code: `@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> u: array<f32>;
fn wl(r: u32, m: u32, t: u32) -> f32 {
  if (m >= ${s.m}u) { return 0.0; }
  return w[${src}];
}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o = gid.x + gid.y * ${MAX_GROUPS * 256}u;
  if (o >= ${n}u) { return; }
  let r = o / ${s.mp}u;
  let m = o % ${s.mp}u;
  ${gl.join("\n  ")}
  ${tRows.join("\n  ")}
  ${stores.join("\n  ")}
}`,
  };
}

function winogradKernelGen(s: WinogradSpec): Kernel {
  const TM = s.tm, TN = 1024 / TM, NI = TN / 8, CK = 256 / TN;
  if (![16, 32].includes(TM)) throw new Error(`conv Winograd: tile ${TM} must be 16 or 32`);
  const mp = paddedChannels(s.m, TM);
  const tilesY = Math.ceil(s.outH / 2), tilesX = Math.ceil(s.outW / 2);
  const T = s.batch * tilesY * tilesX;
  const nTiles = Math.ceil(T / TN), mTiles = mp / TM;
  const fold = Math.ceil(nTiles / MAX_GROUPS);
  const inHW = s.inH * s.inW, outHW = s.outH * s.outW;
  const uOff = 0, vOff = (16 * CK * TM) / 4; // vec4 offsets of the U and V slabs in S
  const sLen = vOff + (16 * CK * TN) / 4;
  const e = s.epilogue;

  // Input transform of one 4×4 patch: t = Bᵀ d, V = t B.
  const loads: string[] = [];
  for (let a = 0; a < 4; a++) {
    for (let c = 0; c < 4; c++) {
      loads.push(`let d${a}${c} = ld(base, iy0 + ${a}, ix0 + ${c}, ok);`);
    }
  }
  const tb: string[] = [];
  for (let c = 0; c < 4; c++) {
    tb.push(
      `let t0${c} = d0${c} - d2${c};`,
      `let t1${c} = d1${c} + d2${c};`,
      `let t2${c} = d2${c} - d1${c};`,
      `let t3${c} = d1${c} - d3${c};`,
    );
  }
  const vStores: string[] = [];
  const vExpr = (i: number) => [
    `t${i}0 - t${i}2`,
    `t${i}1 + t${i}2`,
    `t${i}2 - t${i}1`,
    `t${i}1 - t${i}3`,
  ];
  for (let i = 0; i < 4; i++) {
    vExpr(i).forEach((x, j) => {
      const el = 4 * i + j;
      vStores.push(`S[${vOff}u + ${(el * CK * TN) / 4}u + vRow][vc] = ${x};`);
    });
  }

  // U slab: 16·CK·TM floats as vec4 from u [16, R, Mp].
  const uVec = (16 * CK * TM) / 4;
  const uLoads: string[] = [];
  for (let j = 0; j * 256 < uVec; j++) {
    uLoads.push(`{
      let v = lid + ${j * 256}u;
      ${(j + 1) * 256 > uVec ? `if (v < ${uVec}u) {` : "{"}
      let m4 = v % ${TM / 4}u;
      let rest = v / ${TM / 4}u;
      let rr = rest % ${CK}u;
      let el = rest / ${CK}u;
      let r = r0 + rr;
      S[${uOff}u + v] = select(vec4<f32>(0.0), u[select(0u, ((el * ${s.r}u + r) * ${mp}u + mBase) / 4u + m4, r < ${s.r}u)], r < ${s.r}u);
      }
    }`);
  }

  const accs: string[] = [];
  for (let i = 0; i < 8; i++) {
    accs.push(`var acc${i}_0 = vec4<f32>(0.0);`, `var acc${i}_1 = vec4<f32>(0.0);`);
  }
  const body: string[] = [];
  for (let rr = 0; rr < CK; rr++) {
    body.push(
      `let ua${rr} = S[uRow + ${(rr * TM) / 4}u];`,
      `let ub${rr} = S[uRow + ${(rr * TM) / 4 + 1}u];`,
      `let va${rr} = S[vRow2 + ${(rr * TN) / 4}u];`,
      `let vb${rr} = S[vRow2 + ${(rr * TN) / 4 + 1}u];`,
    );
    for (let i = 0; i < 8; i++) {
      const u = `${i < 4 ? "ua" : "ub"}${rr}[${i % 4}]`;
      body.push(
        `acc${i}_0 = fma(vec4<f32>(${u}), va${rr}, acc${i}_0);`,
        `acc${i}_1 = fma(vec4<f32>(${u}), vb${rr}, acc${i}_1);`,
      );
    }
  }

  // Epilogue: NI rounds; in round q the threads with ni == q park their accumulators as
  // M[e][m][j] (m < TM, j < 8 tiles), then TM·8 (channel, tile) pairs are transformed.
  const park = Array.from(
    { length: 8 },
    (_, i) =>
      `S[(el * ${TM}u + mi * 8u + ${i}u) * 2u] = acc${i}_0;
      S[(el * ${TM}u + mi * 8u + ${i}u) * 2u + 1u] = acc${i}_1;`,
  ).join("\n      ");
  const mLoads = Array.from(
    { length: 16 },
    (_, k) => `let q${k} = S[(${k}u * ${TM}u + ml) * 2u + jj / 4u][jj % 4u];`,
  );
  // s = Aᵀ M (2×4), Y = s A (2×2).
  const outT = [0, 1, 2, 3].map((c) =>
    `let s0${c} = q${c} + q${4 + c} + q${8 + c};
      let s1${c} = q${4 + c} - q${8 + c} - q${12 + c};`
  );
  const y = [
    ["0u", "0u", "s00 + s01 + s02"],
    ["0u", "1u", "s01 - s02 - s03"],
    ["1u", "0u", "s10 + s11 + s12"],
    ["1u", "1u", "s11 - s12 - s13"],
  ];
  const outStores = y.map(([dy, dx, v]) =>
    `if (oy + ${dy} < ${s.outH}u && ox + ${dx} < ${s.outW}u) { ${
      epilogueStore(e, v, "m", `ob + (oy + ${dy}) * ${s.outW}u + ox + ${dx}`)
    } }`
  );

  const extra = epilogueInputs(e).map((n, k) =>
    `@group(0) @binding(${2 + k}) var<storage, read> ${n}: array<f32>;`
  );
  let b = 2 + extra.length;
  const outDecl = [`@group(0) @binding(${b++}) var<storage, read_write> out: array<f32>;`];
  if (e.savePre) {
    outDecl.push(`@group(0) @binding(${b++}) var<storage, read_write> pre: array<f32>;`);
  }

  const tileIndex = fold === 1 ? "let nTile = wid.x;" : `let nTile = wid.x + wid.z * ${MAX_GROUPS}u;
  if (nTile >= ${nTiles}u) { return; }`;

  const code = `@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<vec4<f32>>;
${extra.join("\n")}
${outDecl.join("\n")}
var<workgroup> S: array<vec4<f32>, ${sLen}>;
fn ld(base: u32, iy: i32, ix: i32, ok: bool) -> f32 {
  let inb = ok && u32(iy) < ${s.inH}u && u32(ix) < ${s.inW}u;
  return select(0.0, inp[select(0u, base + u32(iy) * ${s.inW}u + u32(ix), inb)], inb);
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${tileIndex}
  let mBase = wid.y * ${TM}u;
  let el = lid / 16u;
  let mi = (lid % 16u) / ${NI}u;
  let ni = lid % ${NI}u;
  // this thread's patch: tile n of the workgroup, channel rr of each slab
  let n = lid % ${TN}u;
  let prr = lid / ${TN}u;
  let t = nTile * ${TN}u + n;
  let valid = t < ${T}u;
  let tb = t / ${tilesY * tilesX}u;
  let tr = t % ${tilesY * tilesX}u;
  let iy0 = i32((tr / ${tilesX}u) * 2u) - ${s.padY};
  let ix0 = i32((tr % ${tilesX}u) * 2u) - ${s.padX};
  let vRow = (prr * ${TN}u + n) / 4u;
  let vc = n % 4u;
  let uRow = ${uOff}u + (el * ${CK * TM}u) / 4u + mi * 2u;
  let vRow2 = ${vOff}u + (el * ${CK * TN}u) / 4u + ni * 2u;
  ${accs.join("\n  ")}
  for (var r0 = 0u; r0 < ${s.r}u; r0 += ${CK}u) {
    {
      let ok = valid && r0 + prr < ${s.r}u;
      let base = (tb * ${s.r}u + r0 + prr) * ${inHW}u;
      ${loads.join("\n      ")}
      ${tb.join("\n      ")}
      ${vStores.join("\n      ")}
    }
    ${uLoads.join("\n    ")}
    workgroupBarrier();
    ${body.join("\n    ")}
    workgroupBarrier();
  }
  for (var q = 0u; q < ${NI}u; q++) {
    if (ni == q) {
      ${park}
    }
    workgroupBarrier();
    for (var p = lid; p < ${TM * 8}u; p += 256u) {
      let ml = p / 8u;
      let jj = p % 8u;
      let m = mBase + ml;
      let tt = nTile * ${TN}u + q * 8u + jj;
      if (m < ${s.m}u && tt < ${T}u) {
        ${mLoads.join("\n        ")}
        ${outT.join("\n        ")}
        let b = tt / ${tilesY * tilesX}u;
        let rem = tt % ${tilesY * tilesX}u;
        let oy = (rem / ${tilesX}u) * 2u;
        let ox = (rem % ${tilesX}u) * 2u;
        let ob = (b * ${s.m}u + m) * ${outHW}u;
        ${outStores.join("\n        ")}
      }
    }
    workgroupBarrier();
  }
}`;
  return {
    name: s.name,
    code,
    workgroups: [Math.min(nTiles, MAX_GROUPS), mTiles, fold],
  };
}

/** Elements of the transformed weights for a spec: [16, R, Mp]. */
export function winogradWeightShape(s: WinogradSpec): number[] {
  return [16, s.r, paddedChannels(s.m, s.tm)];
}

// Generated once per distinct spec (see cached in common.ts).
export const winogradKernel = cached(winogradKernelGen);
export const winogradWeightKernel = cached(winogradWeightKernelGen);

// ---- weight gradient -------------------------------------------------------------------------
// The same transforms run backwards: with U = G g Gᵀ and y = Aᵀ (U ⊙ V) A per tile,
//   dL/dU = Σ_tiles (A dY Aᵀ) ⊙ V   and   dL/dg = Gᵀ (dL/dU) G,
// so the long sum over output tiles is 16 GEMMs of transformed dy and x tiles (reduced over
// tiles), and the 4×4 → 3×3 transform runs once per (co, ci) at the end. Chunks of tiles write
// partials [split, 16, Co, Ci]; winogradWgradFinishKernel sums them and transforms.

export interface WinogradWgradSpec {
  geom: ConvGeometry;
  splits: number;
  /** Tiles per split (a multiple of the slab, 8). */
  chunk: number;
}

const WG_TM = 32, WG_TC = 32, WG_TK = 8;

/** Splits: about 1024 workgroups, at least 4 slabs of tiles each. */
export function winogradWgradSplits(g: ConvGeometry): { splits: number; chunk: number } {
  const tiles = g.batch * Math.ceil(g.ho / 2) * Math.ceil(g.wo / 2);
  const pairs = Math.ceil(g.co / WG_TM) * Math.ceil(g.ci / WG_TC);
  const maxSplits = Math.max(1, Math.floor(tiles / (4 * WG_TK)));
  const splits = Math.max(1, Math.min(maxSplits, Math.round(1024 / pairs), 4096));
  const chunk = Math.ceil(tiles / splits / WG_TK) * WG_TK;
  return { splits: Math.ceil(tiles / chunk), chunk };
}

function winogradWgradKernelGen(s: WinogradWgradSpec): Kernel {
  const g = s.geom;
  const tilesY = Math.ceil(g.ho / 2), tilesX = Math.ceil(g.wo / 2);
  const T = g.batch * tilesY * tilesX;
  const ciTiles = Math.ceil(g.ci / WG_TC);
  const yOff = 0, vOff = (16 * WG_TK * WG_TM) / 4; // vec4 offsets in S
  const sLen = vOff + (16 * WG_TK * WG_TC) / 4;
  const hw = g.h * g.w, ohw = g.ho * g.wo;

  // dy tile (2×2) → A dY Aᵀ (4×4); x patch (4×4) → Bᵀ d B.
  const dyT = `let s00 = e00; let s01 = e01;
      let s10 = e00 + e10; let s11 = e01 + e11;
      let s20 = e00 - e10; let s21 = e01 - e11;
      let s30 = -e10; let s31 = -e11;`;
  const yStores: string[] = [];
  for (let i = 0; i < 4; i++) {
    [`s${i}0`, `s${i}0 + s${i}1`, `s${i}0 - s${i}1`, `-s${i}1`].forEach((x, j) => {
      yStores.push(`S[${yOff}u + ${((4 * i + j) * WG_TK * WG_TM) / 4}u + yRow][yc] = ${x};`);
    });
  }
  const dLoads: string[] = [];
  for (let a = 0; a < 4; a++) {
    for (let c = 0; c < 4; c++) {
      dLoads.push(`let d${a}${c} = ldx(xb, iy0 + ${a}, ix0 + ${c}, okx);`);
    }
  }
  const tb: string[] = [];
  for (let c = 0; c < 4; c++) {
    tb.push(
      `let t0${c} = d0${c} - d2${c};`,
      `let t1${c} = d1${c} + d2${c};`,
      `let t2${c} = d2${c} - d1${c};`,
      `let t3${c} = d1${c} - d3${c};`,
    );
  }
  const vStores: string[] = [];
  for (let i = 0; i < 4; i++) {
    [`t${i}0 - t${i}2`, `t${i}1 + t${i}2`, `t${i}2 - t${i}1`, `t${i}1 - t${i}3`].forEach((x, j) => {
      vStores.push(`S[${vOff}u + ${((4 * i + j) * WG_TK * WG_TC) / 4}u + vRow][vc] = ${x};`);
    });
  }
  const accs: string[] = [];
  for (let i = 0; i < 8; i++) {
    accs.push(`var acc${i}_0 = vec4<f32>(0.0);`, `var acc${i}_1 = vec4<f32>(0.0);`);
  }
  const body: string[] = [];
  for (let k = 0; k < WG_TK; k++) {
    body.push(
      `let ya${k} = S[yRow2 + ${(k * WG_TM) / 4}u];`,
      `let yb${k} = S[yRow2 + ${(k * WG_TM) / 4 + 1}u];`,
      `let va${k} = S[vRow2 + ${(k * WG_TC) / 4}u];`,
      `let vb${k} = S[vRow2 + ${(k * WG_TC) / 4 + 1}u];`,
    );
    for (let i = 0; i < 8; i++) {
      const y = `${i < 4 ? "ya" : "yb"}${k}[${i % 4}]`;
      body.push(
        `acc${i}_0 = fma(vec4<f32>(${y}), va${k}, acc${i}_0);`,
        `acc${i}_1 = fma(vec4<f32>(${y}), vb${k}, acc${i}_1);`,
      );
    }
  }
  const writes: string[] = [];
  for (let i = 0; i < 8; i++) {
    for (let q = 0; q < 2; q++) {
      writes.push(`{
    let co = co0 + mi * 8u + ${i}u;
    let ci = ci0 + ni * 8u + ${q * 4}u;
    if (co < ${g.co}u) {
      let o = ((split * 16u + el) * ${g.co}u + co) * ${g.ci}u + ci;
      for (var l = 0u; l < 4u; l++) { if (ci + l < ${g.ci}u) { part[o + l] = acc${i}_${q}[l]; } }
    }
  }`);
    }
  }

  const code = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
var<workgroup> S: array<vec4<f32>, ${sLen}>;
fn ldx(base: u32, iy: i32, ix: i32, ok: bool) -> f32 {
  let inb = ok && u32(iy) < ${g.h}u && u32(ix) < ${g.w}u;
  return select(0.0, x[select(0u, base + u32(iy) * ${g.w}u + u32(ix), inb)], inb);
}
fn ldy(base: u32, oy: u32, ox: u32, ok: bool) -> f32 {
  let inb = ok && oy < ${g.ho}u && ox < ${g.wo}u;
  return select(0.0, dy[select(0u, base + oy * ${g.wo}u + ox, inb)], inb);
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let co0 = (wid.x / ${ciTiles}u) * ${WG_TM}u;
  let ci0 = (wid.x % ${ciTiles}u) * ${WG_TC}u;
  let split = wid.y;
  let el = lid / 16u;
  let mi = (lid % 16u) / 4u;
  let ni = lid % 4u;
  // this thread's transforms: channel lc (co for dy, ci for x) of tile lk of each slab
  let lc = lid % 32u;
  let lk = lid / 32u;
  let yRow = (lk * ${WG_TM}u + lc) / 4u;
  let yc = lc % 4u;
  let vRow = (lk * ${WG_TC}u + lc) / 4u;
  let vc = lc % 4u;
  let yRow2 = ${yOff}u + (el * ${WG_TK * WG_TM}u) / 4u + mi * 2u;
  let vRow2 = ${vOff}u + (el * ${WG_TK * WG_TC}u) / 4u + ni * 2u;
  ${accs.join("\n  ")}
  let tEnd = min((split + 1u) * ${s.chunk}u, ${T}u);
  for (var t0 = split * ${s.chunk}u; t0 < tEnd; t0 += ${WG_TK}u) {
    {
      let t = t0 + lk;
      let ok = t < tEnd;
      let b = t / ${tilesY * tilesX}u;
      let r = t % ${tilesY * tilesX}u;
      let oy = (r / ${tilesX}u) * 2u;
      let ox = (r % ${tilesX}u) * 2u;
      let oky = ok && co0 + lc < ${g.co}u;
      let yb = (b * ${g.co}u + co0 + lc) * ${ohw}u;
      let e00 = ldy(yb, oy, ox, oky);
      let e01 = ldy(yb, oy, ox + 1u, oky);
      let e10 = ldy(yb, oy + 1u, ox, oky);
      let e11 = ldy(yb, oy + 1u, ox + 1u, oky);
      ${dyT}
      ${yStores.join("\n      ")}
      let okx = ok && ci0 + lc < ${g.ci}u;
      let xb = (b * ${g.ci}u + ci0 + lc) * ${hw}u;
      let iy0 = i32(oy) - ${g.padY};
      let ix0 = i32(ox) - ${g.padX};
      ${dLoads.join("\n      ")}
      ${tb.join("\n      ")}
      ${vStores.join("\n      ")}
    }
    workgroupBarrier();
    ${body.join("\n    ")}
    workgroupBarrier();
  }
  ${writes.join("\n  ")}
}`;
  return {
    name: "conv2d_wgrad_winograd",
    code,
    workgroups: [Math.ceil(g.co / WG_TM) * ciTiles, s.splits, 1],
  };
}

export interface WinogradWgradFinishSpec {
  co: number;
  ci: number;
  splits: number;
}

const FIN_PAIRS = 32, FIN_ROWS = 8;

/** dW[co, ci] = Gᵀ (Σ_split part[split, ·, co, ci]) G: 32 (co, ci) pairs per workgroup, 8
 * threads each summing strided splits, then shared memory. */
function winogradWgradFinishKernelGen(s: WinogradWgradFinishSpec): Kernel {
  const n = s.co * s.ci;
  const groups = Math.ceil(n / FIN_PAIRS);
  const sums = Array.from({ length: 16 }, (_, e) => `var m${e} = 0.0;`);
  const adds = Array.from(
    { length: 16 },
    (_, e) => `m${e} += part[(sp * 16u + ${e}u) * ${n}u + pr];`,
  );
  const park = Array.from(
    { length: 16 },
    (_, e) => `red[(${e}u * ${FIN_ROWS}u + rw) * ${FIN_PAIRS}u + pc] = m${e};`,
  );
  const gather = Array.from({ length: 16 }, (_, e) =>
    `var q${e} = 0.0;
    for (var k = 0u; k < ${FIN_ROWS}u; k++) { q${e} += red[(${e}u * ${FIN_ROWS}u + k) * ${FIN_PAIRS}u + pc]; }`);
  // t = Gᵀ M (3×4), dW = t G (3×3).
  const tRows = [0, 1, 2, 3].map((j) =>
    `let t0${j} = q${j} + 0.5 * (q${4 + j} + q${8 + j});
    let t1${j} = 0.5 * (q${4 + j} - q${8 + j});
    let t2${j} = 0.5 * (q${4 + j} + q${8 + j}) + q${12 + j};`
  );
  const outs = [0, 1, 2].flatMap((k) => [
    `dw[pr * 9u + ${3 * k}u] = t${k}0 + 0.5 * (t${k}1 + t${k}2);`,
    `dw[pr * 9u + ${3 * k + 1}u] = 0.5 * (t${k}1 - t${k}2);`,
    `dw[pr * 9u + ${3 * k + 2}u] = 0.5 * (t${k}1 + t${k}2) + t${k}3;`,
  ]);
  return {
    name: "conv2d_wgrad_winograd_finish",
    workgroups: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    code: `@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> dw: array<f32>;
var<workgroup> red: array<f32, ${16 * FIN_ROWS * FIN_PAIRS}>;
@compute @workgroup_size(${FIN_PAIRS * FIN_ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let pc = lid % ${FIN_PAIRS}u;
  let rw = lid / ${FIN_PAIRS}u;
  let pr = (wid.x + wid.y * ${MAX_GROUPS}u) * ${FIN_PAIRS}u + pc;
  ${sums.join("\n  ")}
  if (pr < ${n}u) {
    for (var sp = rw; sp < ${s.splits}u; sp += ${FIN_ROWS}u) {
      ${adds.join("\n      ")}
    }
  }
  ${park.join("\n  ")}
  workgroupBarrier();
  if (rw != 0u || pr >= ${n}u) { return; }
  ${gather.join("\n  ")}
  ${tRows.join("\n  ")}
  ${outs.join("\n  ")}
}`,
  };
}

export const winogradWgradKernel = cached(winogradWgradKernelGen);
export const winogradWgradFinishKernel = cached(winogradWgradFinishKernelGen);
