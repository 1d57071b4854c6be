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
// transposed and flipped, padded by 2 − pad (the `flip` of the weight transform). Grouped convs
// (ResNeSt's split attention) run every group in one launch: groups are independent convs, so a
// group is one more grid dimension and offsets into the channels, U and the filters. Which convs
// take it: kernels/conv_plan.ts (winogradFits).

import { cached, grid1d, type Kernel, kernel, main1d, MAX_GROUPS, ro, rw } from "./common.ts";
import { type ConvGeometry, type Epilogue, epilogueBindings, epilogueStore } from "./conv2d.ts";

export interface WinogradSpec {
  name: string;
  batch: number;
  /** Output channels M and reduction channels R, per group. */
  m: number;
  r: number;
  /** Independent groups: the tensors hold groups·M and groups·R channels. */
  groups: number;
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
  groups: number;
  /** M rounded up to the tile. */
  mp: number;
  /** Input gradient: g[m][r] = w[r][m] flipped in both axes (w is [groups·R, M, 3, 3]); else w
   * is [groups·M, R, 3, 3]. Either way a group's filters are one block of M·R·9. */
  flip: boolean;
}

/** Output channels per workgroup: 16 (64 tiles) matched or beat 32 (32 tiles) on every
 * FC-Siam layer in an H200 sweep (bench/gpu_conv.ts --sweep), up to 128 channels. */
const WINOGRAD_TILE = 16;

export function paddedChannels(m: number, tm: number): number {
  return Math.ceil(m / tm) * tm;
}

export function forwardWinogradSpec(g: ConvGeometry, epilogue: Epilogue): WinogradSpec {
  return {
    name: "conv2d_winograd",
    batch: g.batch,
    m: g.co / g.groups,
    r: g.ci / g.groups,
    groups: g.groups,
    inH: g.h,
    inW: g.w,
    outH: g.ho,
    outW: g.wo,
    padY: g.padY,
    padX: g.padX,
    epilogue,
    tm: WINOGRAD_TILE,
  };
}

export function dgradWinogradSpec(g: ConvGeometry, epilogue: Epilogue): WinogradSpec {
  return {
    name: "conv2d_dgrad_winograd",
    batch: g.batch,
    m: g.ci / g.groups,
    r: g.co / g.groups,
    groups: g.groups,
    inH: g.ho,
    inW: g.wo,
    outH: g.h,
    outW: g.w,
    padY: 2 - g.padY,
    padX: 2 - g.padX,
    epilogue,
    tm: WINOGRAD_TILE,
  };
}

/** U[group, e, r, m] = (G g Gᵀ)[e] for e = 4·i + j; one thread per (group, r, m) of the padded
 * range. */
function winogradWeightKernelGen(s: WinogradWeightSpec): Kernel {
  const per = s.r * s.mp, n = s.groups * per;
  const block = `gi * ${s.m * s.r * 9}u + `;
  const src = s.flip
    ? `${block}(r * ${s.m}u + m) * 9u + 8u - t`
    : `${block}(m * ${s.r}u + r) * 9u + t`;
  const gl = [0, 1, 2].flatMap((a) =>
    [0, 1, 2].map((c) => `let g${a}${c} = wl(gi, r, m, ${a * 3 + c}u);`)
  );
  // t = G g (4×3), then U = t Gᵀ (4×4).
  const tRows = [0, 1, 2].map((c) =>
    `let t0${c} = g0${c};
  let t1${c} = 0.5 * (g0${c} + g1${c} + g2${c});
  let t2${c} = 0.5 * (g0${c} - g1${c} + g2${c});
  let t3${c} = g2${c};`
  );
  const at = (e: number) => `u[(gi * 16u + ${e}u) * ${per}u + o]`;
  const stores = [0, 1, 2, 3].map((i) =>
    `${at(4 * i)} = t${i}0;
  ${at(4 * i + 1)} = 0.5 * (t${i}0 + t${i}1 + t${i}2);
  ${at(4 * i + 2)} = 0.5 * (t${i}0 - t${i}1 + t${i}2);
  ${at(4 * i + 3)} = t${i}2;`
  );
  const grid = grid1d(n);
  return kernel(
    "conv2d_winograd_weights",
    [ro("w"), rw("u")],
    grid.workgroups,
    `fn wl(gi: u32, r: u32, m: u32, t: u32) -> f32 {
  if (m >= ${s.m}u) { return 0.0; }
  return w[${src}];
}
${main1d(grid.index, n, 256, "og")}
  let gi = og / ${per}u;
  let o = og % ${per}u;
  let r = o / ${s.mp}u;
  let m = o % ${s.mp}u;
  ${gl.join("\n  ")}
  ${tRows.join("\n  ")}
  ${stores.join("\n  ")}
}`,
  );
}

function winogradKernelGen(s: WinogradSpec): Kernel {
  const TM = s.tm, TN = 1024 / TM, NI = TN / 8, CK = 256 / TN, G = s.groups;
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
      S[${uOff}u + v] = select(vec4<f32>(0.0), u[select(0u, (((gi * 16u + el) * ${s.r}u + r) * ${mp}u + mBase) / 4u + m4, r < ${s.r}u)], r < ${s.r}u);
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
      epilogueStore(e, v, "mc", `ob + (oy + ${dy}) * ${s.outW}u + ox + ${dx}`)
    } }`
  );

  const tileIndex = fold === 1 ? "let nTile = wid.x;" : `let nTile = wid.x + wid.z * ${MAX_GROUPS}u;
  if (nTile >= ${nTiles}u) { return; }`;

  const code = `var<workgroup> S: array<vec4<f32>, ${sLen}>;
fn ld(base: u32, iy: i32, ix: i32, ok: bool) -> f32 {
  let inb = ok && u32(iy) < ${s.inH}u && u32(ix) < ${s.inW}u;
  return select(0.0, inp[select(0u, base + u32(iy) * ${s.inW}u + u32(ix), inb)], inb);
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${tileIndex}
  let gi = wid.y / ${mTiles}u;
  let mBase = (wid.y % ${mTiles}u) * ${TM}u;
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
      let base = (tb * ${G * s.r}u + gi * ${s.r}u + r0 + prr) * ${inHW}u;
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
        let mc = gi * ${s.m}u + m;
        let ob = (b * ${G * s.m}u + mc) * ${outHW}u;
        ${outStores.join("\n        ")}
      }
    }
    workgroupBarrier();
  }
}`;
  const bindings = [ro("inp"), ro("u", "vec4<f32>"), ...epilogueBindings(e)];
  return kernel(s.name, bindings, [Math.min(nTiles, MAX_GROUPS), mTiles * G, fold], code);
}

/** Elements of the transformed weights for a spec: [groups, 16, R, Mp]. */
export function winogradWeightShape(s: WinogradSpec): number[] {
  return [s.groups, 16, s.r, paddedChannels(s.m, s.tm)];
}

// Generated once per distinct spec (see cached in common.ts).
export const winogradKernel = cached(winogradKernelGen);
export const winogradWeightKernel = cached(winogradWeightKernelGen);
