// The joint softmax of criss-cross attention (CCNet; mmcv's CrissCrossAttention): each pixel
// (b, h, w) attends to the H pixels of its column and the W pixels of its row, one softmax over
// both sets, with the column term of the pixel itself excluded (mmcv adds −inf on that
// diagonal, so the pixel counts once, in its row). The energies arrive as two batched-matmul
// products, the column ones eH [B, W, H, H] (b, w, h, i) and the row ones eW [B, H, W, W]
// (b, h, w, j); one thread per pixel reads its H + W energies (an online max and sum, then the
// write-out) and writes the probabilities in the same two layouts (0 on the excluded
// diagonal), ready for the value products. Backward: dE = P ⊙ (dP − Σ P ⊙ dP) over the same
// H + W entries.

import { cached, type Kernel, kernel1d, ro, rw } from "./common.ts";

export interface CrissCrossSpec {
  batch: number;
  h: number;
  w: number;
}

/** WGSL: pixel i's coordinates and the bases of its column row (cb) and row row (rb). */
function pixel(s: CrissCrossSpec): string {
  const { h: H, w: W } = s;
  return `let b = i / ${H * W}u;
  let y = (i / ${W}u) % ${H}u;
  let x = i % ${W}u;
  let cb = ((b * ${W}u + x) * ${H}u + y) * ${H}u;
  let rb = i * ${W}u;`;
}

/** eH, eW → pH, pW (same shapes). */
function forwardGen(s: CrissCrossSpec): Kernel {
  const { batch, h: H, w: W } = s;
  return kernel1d(
    "criss_cross_softmax",
    [ro("eH"), ro("eW"), rw("pH"), rw("pW")],
    batch * H * W,
    `${pixel(s)}
  // Online max and sum: one read of each energy before the write-out.
  var m = -3.4028235e38;
  var t = 0.0;
  for (var k = 0u; k < ${H}u; k++) {
    if (k == y) { continue; }
    let e = eH[cb + k];
    if (e > m) { t = t * exp(m - e); m = e; }
    t += exp(e - m);
  }
  for (var k = 0u; k < ${W}u; k++) {
    let e = eW[rb + k];
    if (e > m) { t = t * exp(m - e); m = e; }
    t += exp(e - m);
  }
  let inv = 1.0 / t;
  for (var k = 0u; k < ${H}u; k++) {
    pH[cb + k] = select(exp(eH[cb + k] - m) * inv, 0.0, k == y);
  }
  for (var k = 0u; k < ${W}u; k++) { pW[rb + k] = exp(eW[rb + k] - m) * inv; }`,
  );
}

/** pH, pW, gH, gW → dH, dW (the energies' gradients; 0 on the excluded diagonal). */
function backwardGen(s: CrissCrossSpec): Kernel {
  const { batch, h: H, w: W } = s;
  return kernel1d(
    "criss_cross_softmax_grad",
    [ro("pH"), ro("pW"), ro("gH"), ro("gW"), rw("dH"), rw("dW")],
    batch * H * W,
    `${pixel(s)}
  var dot = 0.0;
  for (var k = 0u; k < ${H}u; k++) { dot += pH[cb + k] * gH[cb + k]; }
  for (var k = 0u; k < ${W}u; k++) { dot += pW[rb + k] * gW[rb + k]; }
  for (var k = 0u; k < ${H}u; k++) { dH[cb + k] = pH[cb + k] * (gH[cb + k] - dot); }
  for (var k = 0u; k < ${W}u; k++) { dW[rb + k] = pW[rb + k] * (gW[rb + k] - dot); }`,
  );
}

// Generated once per distinct spec (see cached in common.ts).
export const crissCrossSoftmaxKernel = cached(forwardGen);
export const crissCrossSoftmaxGradKernel = cached(backwardGen);
