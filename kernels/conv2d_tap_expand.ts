// Input gradient of a patch conv (kernel = stride, no padding, dilation 1, one group, the input
// tiled exactly), which is also the forward of a kernel = stride transposed conv (SNUNet's k2 s2
// up-convs): every dx pixel takes exactly one tap of one dy pixel,
//   dx[n, c, sy·i + a, sx·j + b] = Σ_o dy[n, o, i, j] · W[o, c, a, b],
// so one thread per dy pixel and block of output channels reads that pixel's channels once and
// writes its sy × sx patch of each channel of the block, with the convs' epilogue. Neighbouring
// threads take neighbouring j: the reads of dy and the patch rows written are contiguous.
// The GEMM routes (phase GEMMs with strided writes, or a GEMM then a shuffle pass) move the
// output two or three times; this moves dy once per channel block and dx once.

import { cached, grid1d, type Kernel, kernel, main1d, ro } from "./common.ts";
import { type ConvGeometry, type Epilogue, epilogueBindings, epilogueStore } from "./conv2d.ts";

export interface TapExpandSpec {
  geom: ConvGeometry;
  epilogue: Epilogue;
}

/** Outputs one thread accumulates (block channels × sy × sx), at most. */
const MAX_ACCUMULATORS = 32;

/** Output channels per thread: the largest divisor of g.ci whose patches fit the accumulators. */
export function tapExpandBlock(g: ConvGeometry): number {
  const fit = Math.max(1, Math.floor(MAX_ACCUMULATORS / (g.kh * g.kw)));
  for (let b = Math.min(fit, g.ci); b > 1; b--) if (g.ci % b === 0) return b;
  return 1;
}

/** Bindings: dy [B, Co, Ho, Wo], w [Co, Ci, kh, kw], [bias], [slope], dx [B, Ci, H, W], [pre]. */
function tapExpandKernelGen(s: TapExpandSpec): Kernel {
  const g = s.geom;
  const sy = g.kh, sx = g.kw, taps = sy * sx;
  const cb = tapExpandBlock(g), blocks = g.ci / cb;
  const pix = g.ho * g.wo;
  const n = g.batch * blocks * pix;
  const grid = grid1d(n);
  const fma: string[] = [];
  for (let c = 0; c < cb; c++) {
    for (let t = 0; t < taps; t++) {
      fma.push(`acc[${c * taps + t}] = fma(v, w[wb + ${c * taps + t}u], acc[${c * taps + t}]);`);
    }
  }
  const store: string[] = [];
  for (let c = 0; c < cb; c++) {
    for (let a = 0; a < sy; a++) {
      for (let b = 0; b < sx; b++) {
        const k = c * taps + a * sx + b;
        store.push(`{ let ch = c0 + ${c}u;
    let oi = ((nn * ${g.ci}u + ch) * ${g.h}u + i * ${sy}u + ${a}u) * ${g.w}u + j * ${sx}u + ${b}u;
    ${epilogueStore(s.epilogue, `acc[${k}]`, "ch", "oi")} }`);
      }
    }
  }
  return kernel(
    "conv2d_tap_expand",
    [ro("dy"), ro("w"), ...epilogueBindings(s.epilogue)],
    grid.workgroups,
    `${main1d(grid.index, n, 256, "t")}
  let p = t % ${pix}u;
  let i = p / ${g.wo}u;
  let j = p % ${g.wo}u;
  let nb = t / ${pix}u;
  let nn = nb / ${blocks}u;
  let c0 = (nb % ${blocks}u) * ${cb}u;
  var acc: array<f32, ${cb * taps}>;
  var src = nn * ${g.co * pix}u + p;
  for (var o = 0u; o < ${g.co}u; o++) {
    let v = dy[src];
    let wb = (o * ${g.ci}u + c0) * ${taps}u;
    ${fma.join("\n    ")}
    src += ${pix}u;
  }
  ${store.join("\n  ")}
}`,
  );
}

export const tapExpandKernel = cached(tapExpandKernelGen);
