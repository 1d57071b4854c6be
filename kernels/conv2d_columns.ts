// Strided transposed convolutions through explicit columns, so the matmul kernel runs their GEMM
// with full tiles where the implicit-GEMM kernels split into one small launch per output phase.
//
// Input gradient (equivalently, a strided transposed convolution's forward): one GEMM forms
//   cols[b, (ci, ky, kx), (oy, ox)] = Σ_co W[co, (ci, ky, kx)] · dy[b, co, (oy, ox)],
// a well-shaped product (rows = Ci·kh·kw) that the matmul kernel runs at full tile size, where
// the implicit-GEMM form splits into one small launch per output phase. col2imKernel then sums,
// for every input pixel, the few (oy, ox, ky, kx) that reach it, and applies the conv epilogue.

import { cached, grid1d, type Kernel, kernel, main1d, ro } from "./common.ts";
import { type ConvGeometry, type Epilogue, epilogueBindings, epilogueStore } from "./conv2d.ts";

export interface Col2imSpec {
  geom: ConvGeometry;
  epilogue: Epilogue;
}

/** WGSL: taps of one axis reaching input coordinate `i` (i32): for each k with
 * (i + pad − k·dil) divisible by the stride and the quotient inside [0, out), the body runs
 * with `o${axis}` (u32) and `k${axis}` (u32) bound. */
function axisLoop(
  axis: string,
  i: string,
  k: number,
  stride: number,
  pad: number,
  dil: number,
  out: number,
  body: string,
): string {
  return `for (var k${axis} = 0u; k${axis} < ${k}u; k${axis}++) {
    let t${axis} = ${i} + ${pad} - i32(k${axis}) * ${dil};
    if (t${axis} < 0 || t${axis} % ${stride} != 0) { continue; }
    let o${axis} = u32(t${axis} / ${stride});
    if (o${axis} >= ${out}u) { continue; }
    ${body}
  }`;
}

/** dx[b, c, iy, ix] = epilogue(Σ cols[b, (c·kh + ky)·kw + kx, oy·wo + ox]) over the taps that
 * reach (iy, ix). Bindings: cols, [bias], [slope], out, [pre]. */
function col2imKernelGen(s: Col2imSpec): Kernel {
  const g = s.geom, e = s.epilogue;
  if (g.groups !== 1) throw new Error("col2im: one group only");
  const n = g.batch * g.ci * g.h * g.w;
  const grid = grid1d(n);
  const taps = g.kh * g.kw, ohw = g.ho * g.wo;
  const inner = axisLoop(
    "x",
    "ix",
    g.kw,
    g.strideX,
    g.padX,
    g.dilX,
    g.wo,
    `acc += cols[rowBase + (ky * ${g.kw}u + kx) * ${ohw}u + oy * ${g.wo}u + ox];`,
  );
  const loops = axisLoop("y", "iy", g.kh, g.strideY, g.padY, g.dilY, g.ho, inner);
  return kernel(
    "conv2d_col2im",
    [ro("cols"), ...epilogueBindings(e)],
    grid.workgroups,
    `${main1d(grid.index, n, 256, "o")}
  let ix = i32(o % ${g.w}u);
  let iy = i32((o / ${g.w}u) % ${g.h}u);
  let bc = o / ${g.h * g.w}u;
  let c = bc % ${g.ci}u;
  // cols rows of (b, c): [b][c·taps + tap][oy·wo + ox].
  let rowBase = bc * ${taps * ohw}u;
  var acc = 0.0;
  ${loops}
  ${epilogueStore(e, "acc", "c", "o")}
}`,
  );
}

/** Bytes of the cols intermediate (the same shape for both directions). */
export function columnsBytes(g: ConvGeometry): number {
  return g.batch * g.ci * g.kh * g.kw * g.ho * g.wo * 4;
}

// Generated once per distinct spec (see cached in common.ts).
export const col2imKernel = cached(col2imKernelGen);
