// Gradient of a convolution w.r.t. its weight (and bias): dW[co, k] = Σ_n dy[co, n] · X[k, n]
// over every output position n = (b, oy, ox), with k = (ci, ky, kx) and X gathered from the
// input. The sum over n is long (8·512·512) and dW small, so it is split: each workgroup sums
// one chunk of positions into partials [split, Co, K(+1)], and splitReduceKernel adds them.
// The bias gradient rides along as one more column of X that is all ones.
// Two kernels produce partials: a register-blocked GEMM (many output channels per group) and
// a direct one for depthwise / mixing convs (one output channel per workgroup, every weight of
// that channel in registers, strips of outputs along x).

import { cached, groupGrid, type Kernel, kernel, ro, rw } from "./common.ts";
import type { ConvGeometry } from "./conv2d.ts";
import { H100_PROFILE } from "./device_profile.ts";

/** The partial weight-gradient kernels' bindings: x, dy, then the per-split partials. */
const PARTIAL_BINDINGS = [ro("x"), ro("dy"), rw("part")];

export interface WgradTile {
  /** Output channels × weight columns per workgroup, positions per step. */
  tm: number;
  tk: number;
  tp: number;
  /** Per thread: rm channels (1, 2, 4 or 8) × rk columns (multiple of 4). */
  rm: number;
  rk: number;
}

export interface WgradGemmSpec {
  geom: ConvGeometry;
  bias: boolean;
  /** Chunks the positions are split into, and positions per chunk (multiple of tile.tp). */
  splits: number;
  chunk: number;
  tile: WgradTile;
}

/** Weight columns per output channel (Ci/groups·kh·kw), plus one for the bias. */
export function wgradColumns(g: ConvGeometry, bias: boolean): number {
  return (g.ci / g.groups) * g.kh * g.kw + (bias ? 1 : 0);
}

/**
 * Tile for `mg` output channels per group and `cols` weight columns, and the workgroups to aim
 * for (splitting the positions), from sweeps of the FC-Siam layers on an H200
 * (bench/gpu_conv.ts --sweep --sweep-op wgrad), its workgroup targets scaled by the device's
 * `fill` against the H100's 256: 64×64 tiles once a group has more than 32
 * channels; 16×64 for up to 16 channels with many columns; otherwise 32×32 tiles with 4×4 per
 * thread, which beat narrower tiles even where half their rows are padding. Twice the
 * workgroups (more splits) except for very few columns, where fewer won. Convs of 3-channel
 * images (17–32 columns) take 32×32 tiles and 2048 workgroups whatever their channels: TinyCD's
 * 3→48 stem 0.191 against 0.231 ms for 64×64, FC-Siam's 3→16 0.360 against 0.439 for 512
 * workgroups (bench/results/conv_sweep_s5_h200.txt).
 */
export function pickWgradTile(
  mg: number,
  cols: number,
  fill = H100_PROFILE.fillWorkgroups,
): { tile: WgradTile; target: number } {
  const t = pickWgradTileH100(mg, cols);
  // The targets were tuned where 256 workgroups fill the GPU: scaled to the device's fill.
  const scale = fill / H100_PROFILE.fillWorkgroups;
  return { tile: t.tile, target: Math.max(1, Math.round(t.target * scale)) };
}

function pickWgradTileH100(mg: number, cols: number): { tile: WgradTile; target: number } {
  if (mg > 8 && cols > 16 && cols <= 32) {
    return { tile: { tm: 32, tk: 32, tp: 16, rm: 4, rk: 4 }, target: 2048 };
  }
  if (mg > 32) return { tile: { tm: 64, tk: 64, tp: 16, rm: 4, rk: 8 }, target: 1024 };
  if (mg > 8 && mg <= 16 && cols > 64) {
    return { tile: { tm: 16, tk: 64, tp: 16, rm: 4, rk: 4 }, target: 2048 };
  }
  if (mg > 8) {
    const tk = cols > 16 ? 32 : 16;
    return { tile: { tm: 32, tk, tp: 16, rm: 4, rk: 4 }, target: cols > 32 ? 2048 : 512 };
  }
  return { tile: { tm: 8, tk: cols > 16 ? 32 : 16, tp: 16, rm: 2, rk: 4 }, target: 1024 };
}

/** Split count: enough workgroups to fill a large GPU, each chunk at least `minSteps` steps. */
export function pickSplits(
  tiles: number,
  positions: number,
  step: number,
  minSteps = 16,
  target = 1024,
): { splits: number; chunk: number } {
  const maxSplits = Math.max(1, Math.floor(positions / (step * minSteps)));
  const splits = Math.max(1, Math.min(maxSplits, Math.round(target / tiles), 4096));
  const chunk = Math.ceil(positions / splits / step) * step;
  return { splits: Math.ceil(positions / chunk), chunk };
}

function wgradGemmKernelGen(s: WgradGemmSpec): Kernel {
  const g = s.geom;
  const { tm, tk, tp, rm, rk } = s.tile;
  const tx = tk / rk, ty = tm / rm, nt = tx * ty;
  if (rk % 4 || tk % rk || tm % rm || tm % 4 || ![1, 2, 4, 8].includes(rm) || nt % tp) {
    throw new Error(`conv wgrad GEMM: bad tile ${JSON.stringify(s.tile)}`);
  }
  const mg = g.co / g.groups, rg = g.ci / g.groups, taps = g.kh * g.kw;
  const kw = rg * taps, kw1 = kw + (s.bias ? 1 : 0);
  const P = g.batch * g.ho * g.wo, ohw = g.ho * g.wo, hw = g.h * g.w;
  const kTiles = Math.ceil(kw1 / tk), mTiles = Math.ceil(mg / tm);
  const cpp = nt / tp; // loader columns per pass
  const aStride = tm / 4 + 1, bStride = tk / 4 + 1; // vec4 rows, padded against bank conflicts

  const aLoads: string[] = [];
  for (let j = 0; j * cpp < tm; j++) {
    const guard = (j + 1) * cpp > tm;
    aLoads.push(`{
      let m = lc + ${j * cpp}u;
      ${guard ? `if (m < ${tm}u) {` : "{"}
      let ok = okn && mBase + m < ${mg}u;
      let v = dy[select(0u, dyb + (mBase + m) * ${ohw}u, ok)];
      As[lp * ${aStride}u + m / 4u][m % 4u] = select(0.0, v, ok);
      }
    }`);
  }
  const bSetup: string[] = [];
  const bLoads: string[] = [];
  for (let j = 0; j * cpp < tk; j++) {
    const guard = (j + 1) * cpp > tk;
    bSetup.push(`let kc${j} = lc + ${j * cpp}u;
  let kg${j} = kBase + kc${j};
  let r${j} = kg${j} / ${taps}u;
  let t${j} = kg${j} % ${taps}u;
  let cOff${j} = i32((g * ${rg}u + r${j}) * ${hw}u);
  let offy${j} = i32(t${j} / ${g.kw}u) * ${g.dilY} - ${g.padY};
  let offx${j} = i32(t${j} % ${g.kw}u) * ${g.dilX} - ${g.padX};
  let isW${j} = kg${j} < ${kw}u;
  let isB${j} = ${s.bias ? `kg${j} == ${kw}u` : "false"};`);
    bLoads.push(`${guard ? `if (kc${j} < ${tk}u) ` : ""}{
      let iy = oy * ${g.strideY} + offy${j};
      let ix = ox * ${g.strideX} + offx${j};
      let ok = okn && isW${j} && u32(iy) < ${g.h}u && u32(ix) < ${g.w}u;
      let v = x[select(0u, u32(xb + cOff${j} + iy * ${g.w} + ix), ok)];
      Bs[lp * ${bStride}u + kc${j} / 4u][kc${j} % 4u] = select(select(0.0, 1.0, okn && isB${j}), v, ok);
    }`);
  }

  const accs: string[] = [];
  for (let i = 0; i < rm; i++) {
    for (let q = 0; q < rk / 4; q++) accs.push(`var acc${i}_${q} = vec4<f32>(0.0);`);
  }
  const body: string[] = [];
  for (let pp = 0; pp < tp; pp++) {
    const aRow = pp * aStride, bRow = pp * bStride;
    if (rm >= 4) {
      for (let i4 = 0; i4 < rm / 4; i4++) body.push(`let a${pp}_${i4} = As[aOff + ${aRow + i4}u];`);
    } else body.push(`let a${pp}_0 = As[aOff + ${aRow}u];`);
    for (let q = 0; q < rk / 4; q++) body.push(`let b${pp}_${q} = Bs[tx + ${bRow + q * tx}u];`);
    for (let i = 0; i < rm; i++) {
      const comp = rm >= 4 ? `a${pp}_${Math.floor(i / 4)}[${i % 4}]` : `a${pp}_0[aSub + ${i}u]`;
      for (let q = 0; q < rk / 4; q++) {
        body.push(`acc${i}_${q} = fma(vec4<f32>(${comp}), b${pp}_${q}, acc${i}_${q});`);
      }
    }
  }
  const stores: string[] = [];
  for (let i = 0; i < rm; i++) {
    for (let q = 0; q < rk / 4; q++) {
      for (let c = 0; c < 4; c++) {
        stores.push(`{
    let m = mBase + ty * ${rm}u + ${i}u;
    let k = kBase + (tx + ${q * tx}u) * 4u + ${c}u;
    if (m < ${mg}u && k < ${kw1}u) { part[(zs * ${mg}u + m) * ${kw1}u + k] = acc${i}_${q}[${c}]; }
  }`);
      }
    }
  }

  const code = `var<workgroup> As: array<vec4<f32>, ${tp * aStride}>;
var<workgroup> Bs: array<vec4<f32>, ${tp * bStride}>;
@compute @workgroup_size(${nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kBase = wid.x * ${tk}u;
  let mBase = wid.y * ${tm}u;
  let zs = wid.z;
  let g = zs % ${g.groups}u;
  let split = zs / ${g.groups}u;
  let start = split * ${s.chunk}u;
  let end = min(start + ${s.chunk}u, ${P}u);
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  let aOff = ty * ${Math.max(1, rm / 4)}u${rm < 4 ? ` / ${4 / rm}u` : ""};
  let aSub = (ty * ${rm}u) % 4u;
  let lp = lid % ${tp}u;
  let lc = lid / ${tp}u;
  ${bSetup.join("\n  ")}
  ${accs.join("\n  ")}
  for (var p0 = start; p0 < end; p0 += ${tp}u) {
    let n = p0 + lp;
    let okn = n < end;
    let bb = n / ${ohw}u;
    let pix = n % ${ohw}u;
    let oy = i32(pix / ${g.wo}u);
    let ox = i32(pix % ${g.wo}u);
    let dyb = (bb * ${g.co}u + g * ${mg}u) * ${ohw}u + pix;
    let xb = i32(bb * ${g.ci * hw}u);
    ${aLoads.join("\n    ")}
    ${bLoads.join("\n    ")}
    workgroupBarrier();
    ${body.join("\n    ")}
    workgroupBarrier();
  }
  ${stores.join("\n  ")}
}`;
  return kernel("conv2d_wgrad_gemm", PARTIAL_BINDINGS, [kTiles, mTiles, g.groups * s.splits], code);
}

export interface WgradDirectSpec {
  geom: ConvGeometry;
  bias: boolean;
  splits: number;
  /** Strips (b, oy, x-strip) per chunk. */
  chunk: number;
  rw: number;
}

/** Strips one output channel's positions are cut into by the direct weight-gradient kernel. */
export function directWgradStrips(g: ConvGeometry, rw: number): number {
  return g.batch * g.ho * Math.ceil(g.wo / rw);
}

const RED_THREADS = 256;
const RED_VALUES = 16;

/** Weight (and bias) gradient partials for few output channels per group: one workgroup per
 * (chunk, output channel), all of the channel's weights accumulated in registers. */
function wgradDirectKernelGen(s: WgradDirectSpec): Kernel {
  const g = s.geom;
  const rw = s.rw;
  const rg = g.ci / g.groups, mg = g.co / g.groups;
  const ns = Math.ceil(g.wo / rw);
  const items = g.batch * g.ho * ns;
  const taps = g.kh * g.kw;
  const nv = rg * taps + (s.bias ? 1 : 0);
  const offs: number[] = [];
  for (let j = 0; j < rw; j++) {
    for (let kx = 0; kx < g.kw; kx++) {
      const o = j * g.strideX + kx * g.dilX;
      if (!offs.includes(o)) offs.push(o);
    }
  }
  offs.sort((a, b) => a - b);
  const oMax = offs.at(-1)!;

  const accDecl = Array.from({ length: nv }, (_, v) => `var acc${v} = 0.0;`);
  const rowCode = (r: number, ky: number) => {
    const fmas: string[] = [];
    for (let kx = 0; kx < g.kw; kx++) {
      const v = r * taps + ky * g.kw + kx;
      const terms = Array.from({ length: rw }, (_, j) => `d${j} * v${j * g.strideX + kx * g.dilX}`);
      fmas.push(`acc${v} += ${terms.join(" + ")};`);
    }
    const fast = offs.map((o) => `let v${o} = x[u32(row + xb + ${o})];`);
    const slow = offs.map((o) =>
      `let v${o} = select(0.0, x[u32(row + clamp(xb + ${o}, 0, ${
        g.w - 1
      }))], u32(xb + ${o}) < ${g.w}u);`
    );
    return `{
      let iy = oy * ${g.strideY} - ${g.padY} + ${ky * g.dilY};
      if (u32(iy) < ${g.h}u) {
        let row = cb${r} + iy * ${g.w};
        if (inside) {
          ${fast.join("\n          ")}
          ${fmas.join("\n          ")}
        } else {
          ${slow.join("\n          ")}
          ${fmas.join("\n          ")}
        }
      }
    }`;
  };
  const rows: string[] = [];
  for (let r = 0; r < rg; r++) {
    rows.push(`let cb${r} = i32((b * ${g.ci}u + c0 + ${r}u) * ${g.h * g.w}u);`);
    for (let ky = 0; ky < g.kh; ky++) rows.push(rowCode(r, ky));
  }
  const dLoads = Array.from(
    { length: rw },
    (_, j) =>
      `let d${j} = select(0.0, dy[select(0u, db + ${j}u, x0 + ${j}u < ${g.wo}u)], x0 + ${j}u < ${g.wo}u);`,
  );
  const biasAcc = s.bias
    ? `acc${nv - 1} += ${Array.from({ length: rw }, (_, j) => `d${j}`).join(" + ")};`
    : "";

  const reductions: string[] = [];
  for (let v0 = 0; v0 < nv; v0 += RED_VALUES) {
    const vs = Array.from({ length: Math.min(RED_VALUES, nv - v0) }, (_, k) => v0 + k);
    reductions.push(`${vs.map((v, k) => `red[${k * RED_THREADS}u + lid] = acc${v};`).join("\n  ")}
  workgroupBarrier();
  for (var st = ${RED_THREADS / 2}u; st > 0u; st >>= 1u) {
    if (lid < st) {
      ${
      vs.map((_, k) => `red[${k * RED_THREADS}u + lid] += red[${k * RED_THREADS}u + lid + st];`)
        .join("\n      ")
    }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    ${vs.map((v, k) => `part[pb + ${v}u] = red[${k * RED_THREADS}u];`).join("\n    ")}
  }
  workgroupBarrier();`);
  }

  const code = `var<workgroup> red: array<f32, ${RED_VALUES * RED_THREADS}>;
@compute @workgroup_size(${RED_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let split = wid.x;
  let co = wid.y;
  let c0 = (co / ${mg}u) * ${rg}u;
  let start = split * ${s.chunk}u;
  let end = min(start + ${s.chunk}u, ${items}u);
  ${accDecl.join("\n  ")}
  for (var it = start + lid; it < end; it += ${RED_THREADS}u) {
    let sx = it % ${ns}u;
    let t = it / ${ns}u;
    let oy = i32(t % ${g.ho}u);
    let b = t / ${g.ho}u;
    let x0 = sx * ${rw}u;
    let db = ((b * ${g.co}u + co) * ${g.ho}u + u32(oy)) * ${g.wo}u + x0;
    ${dLoads.join("\n    ")}
    ${biasAcc}
    let xb = i32(x0 * ${g.strideX}u) - ${g.padX};
    let inside = xb >= 0 && xb + ${oMax} < ${g.w};
    ${rows.join("\n    ")}
  }
  let pb = (split * ${g.co}u + co) * ${nv}u;
  ${reductions.join("\n  ")}
}`;
  return kernel("conv2d_wgrad_direct", PARTIAL_BINDINGS, [s.splits, g.co, 1], code);
}

export interface SplitReduceSpec {
  splits: number;
  /** Output channels, weight columns per channel (without the bias column). */
  co: number;
  cols: number;
  bias: boolean;
}

const RED_COLS = 32;
const RED_ROWS = 8;

/** dw[co, k] = Σ_s part[s, co, k]; with a bias column, db[co] = Σ_s part[s, co, cols].
 * A workgroup sums 32 consecutive outputs with 8 threads each (strided over the splits,
 * coalesced along the outputs), then adds the 8 in shared memory: one thread per output alone
 * left the few hundred splits as a serial, latency-bound loop on a handful of workgroups. */
function splitReduceKernelGen(s: SplitReduceSpec): Kernel {
  const cols1 = s.cols + (s.bias ? 1 : 0);
  const n = s.co * cols1;
  const g = groupGrid(Math.ceil(n / RED_COLS));
  const bindings = [ro("part"), rw("dw"), ...(s.bias ? [rw("db")] : [])];
  return kernel(
    "conv2d_wgrad_reduce",
    bindings,
    g.workgroups,
    `var<workgroup> acc: array<f32, ${RED_COLS * RED_ROWS}>;
@compute @workgroup_size(${RED_COLS * RED_ROWS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = lid % ${RED_COLS}u;
  let r = lid / ${RED_COLS}u;
  let e = ${g.index} * ${RED_COLS}u + c;
  var t = 0.0;
  if (e < ${n}u) {
    for (var sp = r; sp < ${s.splits}u; sp += ${RED_ROWS}u) { t += part[sp * ${n}u + e]; }
  }
  acc[lid] = t;
  workgroupBarrier();
  if (r != 0u || e >= ${n}u) { return; }
  for (var q = 1u; q < ${RED_ROWS}u; q++) { t += acc[q * ${RED_COLS}u + c]; }
  let co = e / ${cols1}u;
  let k = e % ${cols1}u;
  ${s.bias ? `if (k == ${s.cols}u) { db[co] = t; return; }` : ""}
  dw[co * ${s.cols}u + k] = t;
}`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const wgradGemmKernel = cached(wgradGemmKernelGen);
export const wgradDirectKernel = cached(wgradDirectKernelGen);
export const splitReduceKernel = cached(splitReduceKernelGen);
