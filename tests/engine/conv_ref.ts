// Float64 references of a convolution (any stride, padding, dilation, groups): the forward
// with bias and activation, the input gradient and the weight and bias gradients, by visiting
// every multiply of the direct form.

import type { Conv2dOptions } from "../../engine/ops/conv2d.ts";
import type { ConvGeometry } from "../../kernels/conv2d.ts";
import { activationRef } from "../util.ts";

/** Calls visit(yIndex, xIndex, wIndex) for every multiply of the convolution. */
function eachTap(g: ConvGeometry, visit: (yi: number, xi: number, wi: number) => void): void {
  const cig = g.ci / g.groups, cog = g.co / g.groups;
  for (let b = 0; b < g.batch; b++) {
    for (let co = 0; co < g.co; co++) {
      const c0 = Math.floor(co / cog) * cig;
      for (let oy = 0; oy < g.ho; oy++) {
        for (let ox = 0; ox < g.wo; ox++) {
          const yi = ((b * g.co + co) * g.ho + oy) * g.wo + ox;
          for (let r = 0; r < cig; r++) {
            for (let ky = 0; ky < g.kh; ky++) {
              const iy = oy * g.strideY - g.padY + ky * g.dilY;
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const ix = ox * g.strideX - g.padX + kx * g.dilX;
                if (ix < 0 || ix >= g.w) continue;
                const xi = ((b * g.ci + c0 + r) * g.h + iy) * g.w + ix;
                visit(yi, xi, ((co * cig + r) * g.kh + ky) * g.kw + kx);
              }
            }
          }
        }
      }
    }
  }
}

type Act = NonNullable<Conv2dOptions["activation"]>;

export function convRef(
  g: ConvGeometry,
  x: Float32Array,
  w: Float32Array,
  bias?: Float32Array,
  act: Act = "none",
  slopes?: Float32Array,
): Float64Array {
  const y = new Float64Array(g.batch * g.co * g.ho * g.wo);
  eachTap(g, (yi, xi, wi) => (y[yi] += x[xi] * w[wi]));
  const hw = g.ho * g.wo;
  return y.map((v, i) => {
    const c = Math.floor(i / hw) % g.co;
    const z = v + (bias ? bias[c] : 0);
    return activationRef(act, z, slopes ? slopes[slopes.length === 1 ? 0 : c] : 0);
  });
}

export function dgradRef(g: ConvGeometry, dy: Float32Array, w: Float32Array): Float64Array {
  const dx = new Float64Array(g.batch * g.ci * g.h * g.w);
  eachTap(g, (yi, xi, wi) => (dx[xi] += dy[yi] * w[wi]));
  return dx;
}

export function wgradRef(g: ConvGeometry, x: Float32Array, dy: Float32Array) {
  const dw = new Float64Array(g.co * (g.ci / g.groups) * g.kh * g.kw);
  eachTap(g, (yi, xi, wi) => (dw[wi] += dy[yi] * x[xi]));
  const db = new Float64Array(g.co);
  const hw = g.ho * g.wo;
  dy.forEach((v, i) => (db[Math.floor(i / hw) % g.co] += v));
  return { dw, db };
}
