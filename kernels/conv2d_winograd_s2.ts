// 3×3 stride-2 convolution by a polyphase Winograd form. Along one axis the two outputs of a
// tile, y0 and y1, read five inputs p0..p4 (p_i = x[2·o0 − pad + i]): the outer taps g0, g2 meet
// p0, p2, p4 as the minimal filter F(2, 2) (3 multiplies), the middle tap g1 meets p1 and p3
// directly (2 multiplies), 5 instead of 6:
//   Bᵀ d = [p0 − p2, p2, p4 − p2, p1, p3]    G g = [g0, g0 + g2, g2, g1, g1]
//   y0 = m0 + m1 + m3,  y1 = m1 + m2 + m4     (m = G g ⊙ Bᵀ d)
// Nested over both axes, Y = Aᵀ [ Σ_r (G g Gᵀ) ⊙ (Bᵀ d B) ] A takes 25 multiplies per (2×2
// tile, input channel, output channel) instead of 36: the sum over input channels is 25 GEMMs,
// one per element of the 5×5 transform.
//
// The kernel is laid out as conv2d_winograd.ts (stride 1): per slab of CK input channels a
// workgroup transforms its TN tiles' patches into shared memory and loads the slab of the
// transformed filters U [25, R, Mp]; each thread accumulates one element for 8 output channels ×
// 8 tiles; at the end the 25 elements of each (channel, tile) meet in shared memory for the
// output transform, the bias and activation. Threads = 25 · (TM / 8) · (TN / 8).

import { cached, type Kernel, MAX_GROUPS } from "./common.ts";
import { type ConvGeometry, type Epilogue, epilogueInputs, epilogueStore } from "./conv2d.ts";

export interface WinogradS2Tile {
  /** Output channels and 2×2 tiles per workgroup (multiples of 8), input channels per slab. */
  tm: number;
  tn: number;
  ck: number;
}

export interface WinogradS2Spec {
  batch: number;
  /** Output channels M and input channels R. */
  m: number;
  r: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  padY: number;
  padX: number;
  epilogue: Epilogue;
  tile: WinogradS2Tile;
}

/** 200 threads: 16 channels × 32 tiles, 4 input channels per slab. */
export const WINOGRAD_S2_TILE: WinogradS2Tile = { tm: 16, tn: 32, ck: 4 };

/** A 3×3, stride-2, undilated, ungrouped conv with channels enough for the transforms to pay. */
export function winogradS2Fits(g: ConvGeometry): boolean {
  return g.kh === 3 && g.kw === 3 && g.strideY === 2 && g.strideX === 2 && g.dilY === 1 &&
    g.dilX === 1 && g.groups === 1 && g.ci >= 16 && g.co >= 16;
}

export function winogradS2Spec(
  g: ConvGeometry,
  epilogue: Epilogue,
  tile: WinogradS2Tile = WINOGRAD_S2_TILE,
): WinogradS2Spec {
  return {
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
    tile,
  };
}

/** Output channels rounded up to the tile: the third dimension of U. */
export function winogradS2Channels(s: WinogradS2Spec): number {
  return Math.ceil(s.m / s.tile.tm) * s.tile.tm;
}

/** U[e, r, m] = (G g Gᵀ)[e] for e = 5·i + j from w [M, R, 3, 3], zero for m ≥ M; one thread per
 * (r, m) of the padded range. Bindings: w, u. */
function winogradS2WeightKernelGen(k: { m: number; r: number; mp: number }): Kernel {
  const n = k.r * k.mp;
  const groups = Math.ceil(n / 256);
  const gl = [0, 1, 2].flatMap((a) =>
    [0, 1, 2].map((c) => `let g${a}${c} = wl(r, m, ${a * 3 + c}u);`)
  );
  // t = G g (5×3), then U = t Gᵀ (5×5).
  const rows = (p: string, c: (i: number) => string) =>
    [
      c(0),
      `(${c(0)} + ${c(2)})`,
      c(2),
      c(1),
      c(1),
    ].map((v, i) => `let ${p}${i} = ${v};`);
  const lines: string[] = [];
  for (let c = 0; c < 3; c++) lines.push(...rows(`t${c}_`, (a) => `g${a}${c}`));
  for (let i = 0; i < 5; i++) {
    const us = [`t0_${i}`, `(t0_${i} + t2_${i})`, `t2_${i}`, `t1_${i}`, `t1_${i}`];
    us.forEach((v, j) => lines.push(`u[${5 * i + j}u * ${n}u + o] = ${v};`));
  }
  return {
    name: "conv2d_winograd_s2_weights",
    workgroups: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    code: `@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> u: array<f32>;
fn wl(r: u32, m: u32, t: u32) -> f32 {
  if (m >= ${k.m}u) { return 0.0; }
  return w[(m * ${k.r}u + r) * 9u + t];
}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o = gid.x + gid.y * ${MAX_GROUPS * 256}u;
  if (o >= ${n}u) { return; }
  let r = o / ${k.mp}u;
  let m = o % ${k.mp}u;
  ${gl.join("\n  ")}
  ${lines.join("\n  ")}
}`,
  };
}

function winogradS2KernelGen(s: WinogradS2Spec): Kernel {
  const { tm: TM, tn: TN, ck: CK } = s.tile;
  const GM = TM / 8, GN = TN / 8, NT = 25 * GM * GN;
  if (TM % 8 || TN % 8 || NT > 256 || CK < 1) {
    throw new Error(`conv Winograd stride 2: bad tile ${JSON.stringify(s.tile)}`);
  }
  const mp = Math.ceil(s.m / TM) * TM;
  const tilesY = Math.ceil(s.outH / 2), tilesX = Math.ceil(s.outW / 2);
  const perImage = tilesY * tilesX;
  const T = s.batch * perImage;
  const nTiles = Math.ceil(T / TN), mTiles = mp / TM;
  const fold = Math.ceil(nTiles / MAX_GROUPS);
  const inHW = s.inH * s.inW, outHW = s.outH * s.outW;
  const uVec = (25 * CK * TM) / 4, vVec = (25 * CK * TN) / 4;
  const uOff = 0, vOff = uVec;
  const sLen = Math.max(uVec + vVec, 50 * TM); // slabs, or the parked accumulators
  if (sLen * 16 > 48 << 10) {
    // Past the 48 KiB of workgroup memory that NVIDIA adapters (and most others) offer.
    throw new Error(`conv Winograd stride 2: tile ${JSON.stringify(s.tile)} needs > 48 KiB`);
  }
  const e = s.epilogue;

  // Input transform of one 5×5 patch: t = Bᵀ d (per column), V = t B (per row).
  const bt = (x: (i: number) => string) => [
    `${x(0)} - ${x(2)}`,
    x(2),
    `${x(4)} - ${x(2)}`,
    x(1),
    x(3),
  ];
  const patch: string[] = [];
  for (let a = 0; a < 5; a++) {
    for (let c = 0; c < 5; c++) patch.push(`let d${a}${c} = ld(base, iy0 + ${a}, ix0 + ${c}, ok);`);
  }
  for (let c = 0; c < 5; c++) {
    bt((a) => `d${a}${c}`).forEach((v, i) => patch.push(`let t${i}${c} = ${v};`));
  }
  for (let i = 0; i < 5; i++) {
    bt((c) => `t${i}${c}`).forEach((v, j) =>
      patch.push(`S[${vOff}u + ${((5 * i + j) * CK * TN) / 4}u + vRow][vc] = ${v};`)
    );
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

  // Epilogue: GN rounds; in round q the threads with ni == q park their accumulators as
  // M[e][m][j] (m < TM, j < 8 tiles), then TM·8 (channel, tile) pairs are transformed.
  const park = Array.from(
    { length: 8 },
    (_, i) =>
      `S[(el * ${TM}u + mi * 8u + ${i}u) * 2u] = acc${i}_0;
      S[(el * ${TM}u + mi * 8u + ${i}u) * 2u + 1u] = acc${i}_1;`,
  ).join("\n      ");
  const mLoads = Array.from(
    { length: 25 },
    (_, k) =>
      `let q${Math.floor(k / 5)}${k % 5} = S[(${k}u * ${TM}u + ml) * 2u + jj / 4u][jj % 4u];`,
  );
  // s = Aᵀ M (2×5), Y = s A (2×2).
  const outT: string[] = [];
  for (let j = 0; j < 5; j++) {
    outT.push(`let s0${j} = q0${j} + q1${j} + q3${j};`, `let s1${j} = q1${j} + q2${j} + q4${j};`);
  }
  const outStores: string[] = [];
  for (let a = 0; a < 2; a++) {
    const y = [`s${a}0 + s${a}1 + s${a}3`, `s${a}1 + s${a}2 + s${a}4`];
    y.forEach((v, b) =>
      outStores.push(
        `if (oy + ${a}u < ${s.outH}u && ox + ${b}u < ${s.outW}u) { ${
          epilogueStore(e, v, "m", `ob + (oy + ${a}u) * ${s.outW}u + ox + ${b}u`)
        } }`,
      )
    );
  }

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
@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${tileIndex}
  let mBase = wid.y * ${TM}u;
  let el = lid / ${GM * GN}u;
  let mi = (lid % ${GM * GN}u) / ${GN}u;
  let ni = lid % ${GN}u;
  let uRow = ${uOff}u + (el * ${CK * TM}u) / 4u + mi * 2u;
  let vRow2 = ${vOff}u + (el * ${CK * TN}u) / 4u + ni * 2u;
  ${accs.join("\n  ")}
  for (var r0 = 0u; r0 < ${s.r}u; r0 += ${CK}u) {
    for (var pp = lid; pp < ${TN * CK}u; pp += ${NT}u) {
      // patch of tile n of the workgroup, channel prr of the slab
      let n = pp % ${TN}u;
      let prr = pp / ${TN}u;
      let t = nTile * ${TN}u + n;
      let tb = t / ${perImage}u;
      let tr = t % ${perImage}u;
      let iy0 = i32((tr / ${tilesX}u) * 4u) - ${s.padY};
      let ix0 = i32((tr % ${tilesX}u) * 4u) - ${s.padX};
      let ok = t < ${T}u && r0 + prr < ${s.r}u;
      let base = (tb * ${s.r}u + r0 + prr) * ${inHW}u;
      let vRow = (prr * ${TN}u + n) / 4u;
      let vc = n % 4u;
      ${patch.join("\n      ")}
    }
    for (var v = lid; v < ${uVec}u; v += ${NT}u) {
      let m4 = v % ${TM / 4}u;
      let rest = v / ${TM / 4}u;
      let r = r0 + rest % ${CK}u;
      let ue = rest / ${CK}u;
      let ok = r < ${s.r}u;
      S[${uOff}u + v] = select(vec4<f32>(0.0), u[select(0u, ((ue * ${s.r}u + r) * ${mp}u + mBase) / 4u + m4, ok)], ok);
    }
    workgroupBarrier();
    ${body.join("\n    ")}
    workgroupBarrier();
  }
  for (var q = 0u; q < ${GN}u; q++) {
    if (ni == q) {
      ${park}
    }
    workgroupBarrier();
    for (var p = lid; p < ${TM * 8}u; p += ${NT}u) {
      let ml = p / 8u;
      let jj = p % 8u;
      let m = mBase + ml;
      let tt = nTile * ${TN}u + q * 8u + jj;
      if (m < ${s.m}u && tt < ${T}u) {
        ${mLoads.join("\n        ")}
        ${outT.join("\n        ")}
        let bi = tt / ${perImage}u;
        let rem = tt % ${perImage}u;
        let oy = (rem / ${tilesX}u) * 2u;
        let ox = (rem % ${tilesX}u) * 2u;
        let ob = (bi * ${s.m}u + m) * ${outHW}u;
        ${outStores.join("\n        ")}
      }
    }
    workgroupBarrier();
  }
}`;
  return {
    name: "conv2d_winograd_s2",
    code,
    workgroups: [Math.min(nTiles, MAX_GROUPS), mTiles, fold],
  };
}

// Generated once per distinct spec (see cached in common.ts).
export const winogradS2Kernel = cached(winogradS2KernelGen);
export const winogradS2WeightKernel = cached(winogradS2WeightKernelGen);
