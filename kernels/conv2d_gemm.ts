// One concern (~400 lines): the implicit-GEMM kernel's WGSL; its planning is conv2d_gemm_plan.ts.
// Convolution as an implicit GEMM: per group, out[m, n] = Σ_k A[m, k] · B[k, n] where m is an
// output channel, n a (batch, y, x) output position and k an (input channel, tap) pair; B is
// gathered from the input on the fly (never materialised). One generator serves the forward
// conv (taps = the kernel window) and the gradient w.r.t. the input (a transposed conv), which
// is split by output phase (Y mod stride, X mod stride) so every tap it visits is a real one:
// for each phase the valid taps form a regular sub-grid of the kernel.
//
// Each workgroup computes a tm×tn tile of out, each thread rm×rn outputs held in vec4
// registers; A and B slabs tk deep pass through shared memory as vec4, and every inner-loop
// index is a per-thread base plus a constant. Bias and activation are fused into the write-out.
// Where whole slabs fit in one tap the reduction runs tap-major, its gathers coalesced, and
// can read weights that packWeightsKernel laid out slab by slab. Tiles, pickers and the specs
// of each launch: conv2d_gemm_plan.ts.

import {
  cached,
  grid1d,
  type Kernel,
  kernel,
  kernel1d,
  main1d,
  MAX_GROUPS,
  ro,
  rw,
} from "./common.ts";
import {
  convBindings,
  type Epilogue,
  epilogueBindings,
  epilogueStore,
  NO_EPILOGUE,
} from "./conv2d.ts";
import type { ImplicitGemmSpec } from "./conv2d_gemm_plan.ts";

/** Signed WGSL term `+ v·c` for a constant c (omitted when 0). */
function term(v: string, c: number): string {
  if (c === 0) return "";
  if (c === 1) return ` + ${v}`;
  if (c === -1) return ` - ${v}`;
  return c > 0 ? ` + ${v} * ${c}` : ` - ${v} * ${-c}`;
}

function konst(c: number): string {
  return c === 0 ? "" : c > 0 ? ` + ${c}` : ` - ${-c}`;
}

/** Whether a launch walks its reduction tap-major (whole slabs within one tap), the order
 * that packed weights serve. */
export function tapMajorFits(s: ImplicitGemmSpec): boolean {
  return s.nty * s.ntx > 1 && s.rg % s.tile.tk === 0;
}

function implicitGemmKernelGen(s: ImplicitGemmSpec): Kernel {
  const { tm, tn, tk, rm, rn } = s.tile;
  const tx = tn / rn, ty = tm / rm, nt = tx * ty;
  const cb = tn / 4; // vec4 columns of a B slab
  if (rn % 4 || tn % rn || tm % rm || tm % 4 || ![1, 2, 4, 8].includes(rm) || nt % cb || cb % 4) {
    throw new Error(`conv implicit GEMM: bad tile ${JSON.stringify(s.tile)}`);
  }
  const taps = s.nty * s.ntx;
  const K = s.rg * taps;
  const N = s.batch * s.ny * s.nx;
  const nTiles = Math.ceil(N / tn), mTiles = Math.ceil(s.mg / tm);
  const fold = Math.ceil(nTiles / MAX_GROUPS);
  const inHW = s.inH * s.inW, outHW = s.outH * s.outW;
  const splits = s.splits ?? 1;
  // Split ranges hold whole slabs; each split writes its partial sums with no epilogue.
  const kSplit = Math.ceil(Math.ceil(K / tk) / splits) * tk;
  const outTotal = s.batch * s.outC * outHW;
  const e = splits > 1 ? NO_EPILOGUE : s.epilogue;
  // Four neighbouring positions of a row that start at a multiple of 4 (nx % 4 == 0): stored
  // as one vec4 when contiguous in out, loaded as one vec4 for a pointwise (1×1, stride 1, no
  // padding) reduction whose input rows have the same width.
  const vecOut = s.nx % 4 === 0 && s.osx === 1 && s.ox0 === 0 && s.outW % 4 === 0;
  const vecIn = s.nx % 4 === 0 && taps === 1 && s.isx === 1 && s.ix0 === 0 &&
    s.inW % 4 === 0 && s.nx <= s.inW;
  // Tap-major reduction order k = tap·rg + r when whole slabs fit in one tap: the tap, its
  // bounds checks and each position's address are then per-slab values, and a slab's rows are
  // consecutive channels at a constant plane stride (as cuDNN's precomputed-offset GEMM walks).
  const tapMajor = tapMajorFits(s);
  const packed = !!s.packedWeights;
  if (packed && !tapMajor) {
    throw new Error(`conv implicit GEMM: packed weights need ${s.rg} channels in whole slabs`);
  }
  const m4s = Math.ceil(s.mg / 4); // vec4 rows of a packed weight slab

  // k → (r, qy, qx), as WGSL lets from `k`.
  const splitK = (k: string, p: string) => {
    const lines = [`let ${p}r = i32(${k} / ${taps}u);`];
    const t = taps === 1 ? "0u" : `${k} % ${taps}u`;
    if (s.ntx === 1) lines.push(`let ${p}qy = i32(${t});`, `let ${p}qx = 0;`);
    else if (s.nty === 1) lines.push(`let ${p}qy = 0;`, `let ${p}qx = i32(${t});`);
    else {
      lines.push(`let ${p}t = ${t};`);
      lines.push(`let ${p}qy = i32(${p}t / ${s.ntx}u);`, `let ${p}qx = i32(${p}t % ${s.ntx}u);`);
    }
    return lines.join("\n      ");
  };

  // A slab: tk × tm weights as vec4 over m.
  const aElems = tk * tm / 4;
  const aIters = Math.ceil(aElems / nt);
  const aLoad: string[] = [];
  for (let it = 0; it < aIters; it++) {
    const guard = (it + 1) * nt > aElems;
    if (packed) {
      aLoad.push(`{
    let e = lid + ${it * nt}u;
    ${guard ? `if (e < ${aElems}u) {` : "{"}
      let m4 = mBase / 4u + e % ${tm / 4}u;
      As[e] = select(vec4<f32>(0.0), wt[min(tapP + (r0 + e / ${tm / 4}u) * ${m4s}u + m4, ${
        s.groups * taps * s.rg * m4s - 1
      }u)], m4 < ${m4s}u);
    }
  }`);
      continue;
    }
    aLoad.push(`{
    let e = lid + ${it * nt}u;
    ${guard ? `if (e < ${aElems}u) {` : "{"}
      let kk = e / ${tm / 4}u;
      let m4 = mBase + (e % ${tm / 4}u) * 4u;
      var v = vec4<f32>(0.0);
      ${
      tapMajor
        ? `{
      let wi = tapW + i32((r0 + kk) * ${s.wr}u);`
        : `let k = k0 + kk;
      if (k < ${K}u) {
      ${splitK("k", "a")}
      let wi = i32(g * ${s.wg}u)${term("ar", s.wr)}${konst(s.wt0)}${term("aqy", s.wty)}${
          term("aqx", s.wtx)
        };`
    }
      for (var c = 0u; c < 4u; c++) {
        let m = m4 + c;
        if (m < ${s.mg}u) { v[c] = wt[u32(wi + i32(m * ${s.wm}u))]; }
      }
      }
      As[e] = v;
    }
  }`);
  }

  // B slab: tk × tn gathered inputs; each loader thread owns 4 consecutive positions.
  const rowsPerPass = nt / cb;
  const bPasses = Math.ceil(tk / rowsPerPass);
  const bLoad: string[] = [];
  for (let p = 0; p < bPasses; p++) {
    const guard = (p + 1) * rowsPerPass > tk;
    const loads = vecIn
      ? `let iy0 = py0${term("bqy", s.iys)};
      let ok0 = u32(iy0) < ${s.inH}u;
      vv = select(vec4<f32>(0.0), inp[select(0u, u32(base0 + cOff + iy0 * ${s.inW} + px0) / 4u, ok0)], ok0);`
      : [0, 1, 2, 3].map((j) =>
        `let iy${j} = py${j}${term("bqy", s.iys)};
      let ix${j} = px${j}${term("bqx", s.ixs)};
      let ok${j} = u32(iy${j}) < ${s.inH}u && u32(ix${j}) < ${s.inW}u;
      let v${j} = inp[select(0u, u32(base${j} + cOff + iy${j} * ${s.inW} + ix${j}), ok${j})];`
      ).join("\n      ") +
        `\n      vv = vec4<f32>(select(0.0, v0, ok0), select(0.0, v1, ok1), select(0.0, v2, ok2), select(0.0, v3, ok3));`;
    if (tapMajor) {
      // Loader thread bcol holds positions bcol + j·cb: a warp's loads cover consecutive
      // positions (coalesced) and its shared-memory stores consecutive words.
      bLoad.push(`{
    let kk = brow + ${p * rowsPerPass}u;
    ${guard ? `if (kk < ${tk}u) {` : "{"}
      let cOff = (r0 + kk) * ${inHW}u;
      let row = kk * ${cb}u + bcol / 4u;
      ${
        [0, 1, 2, 3].map((j) =>
          `Bs[row${konst(j * cb / 4)}][bcol % 4u] = select(0.0, inp[at${j} + cOff], ok${j});`
        ).join("\n      ")
      }
    }
  }`);
      continue;
    }
    const gather = `let k = k0 + kk;
      if (k < ${K}u) {
      ${splitK("k", "b")}
      let cOff = br * ${inHW};
      ${loads}`;
    bLoad.push(`{
    let kk = brow + ${p * rowsPerPass}u;
    ${guard ? `if (kk < ${tk}u) {` : "{"}
      var vv = vec4<f32>(0.0);
      ${gather}
      }
      Bs[kk * ${cb}u + bcol] = vv;
    }
  }`);
  }

  // Inner product over one slab, fully unrolled.
  const accs: string[] = [];
  for (let i = 0; i < rm; i++) {
    for (let q = 0; q < rn / 4; q++) accs.push(`var acc${i}_${q} = vec4<f32>(0.0);`);
  }
  const body: string[] = [];
  for (let kk = 0; kk < tk; kk++) {
    const aRow = kk * (tm / 4);
    if (rm >= 4) {
      for (let i4 = 0; i4 < rm / 4; i4++) body.push(`let a${kk}_${i4} = As[aOff + ${aRow + i4}u];`);
    } else {
      body.push(`let a${kk}_0 = As[aOff + ${aRow}u];`);
    }
    for (let q = 0; q < rn / 4; q++) {
      body.push(`let b${kk}_${q} = Bs[bOff + ${kk * cb + q * tx}u];`);
    }
    for (let i = 0; i < rm; i++) {
      const comp = rm >= 4 ? `a${kk}_${Math.floor(i / 4)}[${i % 4}]` : `a${kk}_0[aSub + ${i}u]`;
      for (let q = 0; q < rn / 4; q++) {
        body.push(`acc${i}_${q} = fma(vec4<f32>(${comp}), b${kk}_${q}, acc${i}_${q});`);
      }
    }
  }

  // Write-out with bias and activation.
  const stores: string[] = [];
  const storeAt = (v: string, i: number, idx: string, vec: boolean) =>
    `if (m0 + ${i}u < ${s.mg}u) { ${epilogueStore(e, v, `ch0 + ${i}u`, idx, vec)} }`;
  const position = (n: string) =>
    `let bb = ${n} / ${s.ny * s.nx}u;
      let rem = ${n} % ${s.ny * s.nx}u;
      let o = ${
      splits > 1 ? `sp * ${outTotal}u + ` : ""
    }(bb * ${s.outC}u + ch0) * ${outHW}u + (${s.oy0}u + (rem / ${s.nx}u) * ${s.osy}u) * ${s.outW}u + ${s.ox0}u + (rem % ${s.nx}u) * ${s.osx}u;`;
  for (let q = 0; q < rn / 4; q++) {
    if (vecOut) {
      const lines = Array.from(
        { length: rm },
        (_, i) => storeAt(`acc${i}_${q}`, i, `o / 4u + ${i * outHW / 4}u`, true),
      );
      stores.push(`{
    let n = nBase + ${q * tx * 4}u;
    if (n < ${N}u) {
      ${position("n")}
      ${lines.join("\n      ")}
    }
  }`);
      continue;
    }
    for (let c = 0; c < 4; c++) {
      const lines = Array.from(
        { length: rm },
        (_, i) => storeAt(`acc${i}_${q}[${c}]`, i, `o + ${i * outHW}u`, false),
      );
      stores.push(`{
    let n = nBase + ${q * tx * 4 + c}u;
    if (n < ${N}u) {
      ${position("n")}
      ${lines.join("\n      ")}
    }
  }`);
    }
  }

  // Per-thread positions of the B loader.
  const pix = [0, 1, 2, 3].map((j) =>
    `let n${j} = nTile * ${tn}u + ${tapMajor ? `bcol + ${j * cb}u` : `bcol * 4u + ${j}u`};
  let rem${j} = n${j} % ${s.ny * s.nx}u;
  let base${j} = i32((n${j} / ${s.ny * s.nx}u) * ${s.inC * inHW}u + g * ${s.rg * inHW}u);
  let py${j} = select(-1073741824, i32((rem${j} / ${s.nx}u) * ${s.isy}u)${
      konst(s.iy0)
    }, n${j} < ${N}u);
  let px${j} = i32((rem${j} % ${s.nx}u) * ${s.isx}u)${konst(s.ix0)};`
  ).join("\n  ");

  // Tap-major: this slab's tap, channel offset, weight base, and each loader position's input
  // address (channel 0 of its group) and bounds check.
  const slabTap = `let tap = k0 / ${s.rg}u;
  let r0 = k0 % ${s.rg}u;
  let qy = i32(tap / ${s.ntx}u);
  let qx = i32(tap % ${s.ntx}u);
  ${
    packed
      ? `let tapP = (g * ${taps}u + tap) * ${s.rg * m4s}u;`
      : `let tapW = i32(g * ${s.wg}u)${konst(s.wt0)}${term("qy", s.wty)}${term("qx", s.wtx)};`
  }
  ${
    [0, 1, 2, 3].map((j) =>
      `let iy${j} = py${j}${term("qy", s.iys)};
  let ix${j} = px${j}${term("qx", s.ixs)};
  let ok${j} = u32(iy${j}) < ${s.inH}u && u32(ix${j}) < ${s.inW}u;
  let at${j} = select(0u, u32(base${j} + iy${j} * ${s.inW} + ix${j}), ok${j});`
    ).join("\n  ")
  }`;

  // wid.z = (group · splits + split) · fold + the fold of the tile index.
  const zParts = `let zr = wid.z / ${fold}u;
  let g = zr / ${splits}u;
  let sp = zr % ${splits}u;`;
  const tileIndex = fold === 1
    ? `let nTile = wid.x;\n  ${zParts}`
    : `let nTile = wid.x + (wid.z % ${fold}u) * ${MAX_GROUPS}u;
  ${zParts}
  if (nTile >= ${nTiles}u) { return; }`;
  // This split's slabs: k0 from sp·kSplit up to K.
  const kRange = splits > 1
    ? `var k0 = sp * ${kSplit}u; k0 < min(sp * ${kSplit}u + ${kSplit}u, ${K}u)`
    : `var k0 = 0u; k0 < ${K}u`;

  const code = `var<workgroup> As: array<vec4<f32>, ${aElems}>;
var<workgroup> Bs: array<vec4<f32>, ${tk * cb}>;
@compute @workgroup_size(${nt})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${tileIndex}
  let mBase = wid.y * ${tm}u;
  let tx = lid % ${tx}u;
  let ty = lid / ${tx}u;
  let aOff = ty * ${Math.max(1, rm / 4)}u${rm < 4 ? ` / ${4 / rm}u` : ""};
  let aSub = (ty * ${rm}u) % 4u;
  let bOff = tx;
  let bcol = lid % ${cb}u;
  let brow = lid / ${cb}u;
  ${pix}
  ${accs.join("\n  ")}
  ${
    K === 0 ? "_ = inp[0];\n  _ = wt[0];" : `for (${kRange}; k0 += ${tk}u) {
  ${tapMajor ? slabTap : ""}
  ${aLoad.join("\n  ")}
  ${bLoad.join("\n  ")}
  workgroupBarrier();
  ${body.join("\n  ")}
  workgroupBarrier();
  }`
  }
  let m0 = mBase + ty * ${rm}u;
  let ch0 = g * ${s.mg}u + m0;
  let nBase = nTile * ${tn}u + tx * 4u;
  ${stores.join("\n  ")}
}`;
  return kernel(
    s.name,
    convBindings(e, "inp", { in: vecIn, out: vecOut, w: packed }),
    [Math.min(nTiles, MAX_GROUPS), mTiles, s.groups * splits * fold],
    code,
  );
}

export interface SplitSumSpec {
  splits: number;
  /** Output tensor [batch, outC, hw] and the epilogue to apply. */
  batch: number;
  outC: number;
  hw: number;
  epilogue: Epilogue;
}

/** out = epilogue(Σ_s part[s]) over the splits of a split-reduction implicit GEMM, four
 * elements per thread when a channel's plane is a multiple of 4. Bindings: part, [bias],
 * [slope], out, [pre]. */
function splitSumKernelGen(s: SplitSumSpec): Kernel {
  const vec = s.hw % 4 === 0;
  const w = vec ? 4 : 1;
  const total = s.batch * s.outC * s.hw;
  const n = total / w;
  const grid = grid1d(n);
  const t = vec ? "vec4<f32>" : "f32";
  const sum = Array.from({ length: s.splits }, (_, k) => `part[o + ${k * n}u]`).join(" + ");
  return kernel(
    "conv2d_gemm_split_sum",
    [ro("part", t), ...epilogueBindings(s.epilogue, t)],
    grid.workgroups,
    `${main1d(grid.index, n, 256, "o")}
  let c = (o / ${s.hw / w}u) % ${s.outC}u;
  ${epilogueStore(s.epilogue, sum, "c", "o", vec)}
}`,
  );
}

/** A GEMM's weights rearranged for its A slabs: [groups, taps, rg, 4·⌈mg/4⌉] with the output
 * channel fastest and zeros past mg, so a tap-major slab is one contiguous block. Bindings: w,
 * packed. */
function packWeightsKernelGen(s: ImplicitGemmSpec): Kernel {
  const taps = s.nty * s.ntx, m4s = Math.ceil(s.mg / 4);
  const total = s.groups * taps * s.rg * m4s * 4;
  return kernel1d(
    "conv2d_gemm_pack_weights",
    [ro("w"), rw("packed")],
    total,
    `let m = i % ${m4s * 4}u;
  let r = (i / ${m4s * 4}u) % ${s.rg}u;
  let t = (i / ${m4s * 4 * s.rg}u) % ${taps}u;
  let g = i / ${m4s * 4 * s.rg * taps}u;
  let qy = i32(t / ${s.ntx}u);
  let qx = i32(t % ${s.ntx}u);
  let wi = i32(g * ${s.wg}u + m * ${s.wm}u + r * ${s.wr}u)${konst(s.wt0)}${term("qy", s.wty)}${
      term("qx", s.wtx)
    };
  packed[i] = select(0.0, w[u32(max(wi, 0))], m < ${s.mg}u);`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const implicitGemmKernel = cached(implicitGemmKernelGen);
export const packWeightsKernel = cached(packWeightsKernelGen);
export const splitSumKernel = cached(splitSumKernelGen);
