// Criss-cross attention (CCNet, Huang et al. 2019; mmcv's pure-PyTorch CrissCrossAttention):
// every pixel attends to its column and its row under one softmax. Built from batched GEMMs
// over the columns ([B·W] products of H × H) and over the rows ([B·H] products of W × W), with
// the joint softmax a kernel of its own (kernels/criss_cross.ts), so the cost is that of two
// small batched matmuls per product rather than a dense HW × HW attention. The op saves the
// two probability tensors (B·H·W·(H + W) floats) for its backward.

import {
  crissCrossSoftmaxGradKernel,
  crissCrossSoftmaxKernel,
  type CrissCrossSpec,
} from "../../kernels/criss_cross.ts";
import { noGrad, record } from "../autograd.ts";
import { run } from "../launch.ts";
import { addMacs } from "../profiler.ts";
import { empty, type Tensor } from "../tensor.ts";
import { add } from "./elementwise.ts";
import { permute } from "./layout.ts";
import { gemm } from "./matmul.ts";

// Layouts of a [B, C, H, W] tensor as batched matrices (each a materialised copy):
/** [B, H, W, C]: per row, its pixels × channels. */
const rowsByChannel = (t: Tensor) => permute(t, [0, 2, 3, 1]);
/** [B, H, C, W]: per row, channels × its pixels. */
const rowsChannelFirst = (t: Tensor) => permute(t, [0, 2, 1, 3]);
/** [B, W, H, C]: per column, its pixels × channels. */
const colsByChannel = (t: Tensor) => permute(t, [0, 3, 2, 1]);
/** [B, W, C, H]: per column, channels × its pixels. */
const colsChannelFirst = (t: Tensor) => permute(t, [0, 3, 1, 2]);

/** Sum of two [B, C, H, W] results given in a row layout ([B, H, ·, ·] → [B, C, H, W] by
 * `fromRow`) and a column layout (by `fromCol`); the parts are disposed. */
function joinParts(row: Tensor, fromRow: number[], col: Tensor, fromCol: number[]): Tensor {
  const r = permute(row, fromRow), c = permute(col, fromCol);
  row.dispose();
  col.dispose();
  const out = add(r, c);
  r.dispose();
  c.dispose();
  return out;
}

function disposeAll(...ts: Tensor[]): void {
  for (const t of ts) t.dispose();
}

/**
 * out[b, :, h, w] = Σ_{i≠h} P[i] v[b, :, i, w] + Σ_j P[H + j] v[b, :, h, j], where P is the
 * softmax of the H − 1 column energies q[b, :, h, w]·k[b, :, i, w] (i ≠ h) and the W row
 * energies q[b, :, h, w]·k[b, :, h, j] together. q, k [B, Cqk, H, W]; v [B, C, H, W] →
 * [B, C, H, W] (mmcv's output before γ·out + x).
 */
export function crissCrossAttention(q: Tensor, k: Tensor, v: Tensor): Tensor {
  const bad = () =>
    new Error(
      `crissCrossAttention: q ${q.describe()}, k ${k.describe()}, v ${v.describe()} must be ` +
        "f32 [B, Cqk, H, W], [B, Cqk, H, W], [B, C, H, W]",
    );
  if ([q, k, v].some((t) => t.ndim !== 4 || t.dtype !== "f32")) throw bad();
  const [b, cq, h, w] = q.shape;
  if (k.shape.some((d, i) => d !== q.shape[i])) throw bad();
  if (v.shape[0] !== b || v.shape[2] !== h || v.shape[3] !== w) throw bad();
  const c = v.shape[1];
  const spec: CrissCrossSpec = { batch: b, h, w };
  addMacs(b * h * w * (h + w) * (cq + c));
  const [pH, pW, out] = noGrad(() => {
    // Energies: per column [H, Cqk]·[Cqk, H] → eH [B, W, H, H]; per row → eW [B, H, W, W].
    const qc = colsByChannel(q), kc = colsChannelFirst(k);
    const qr = rowsByChannel(q), kr = rowsChannelFirst(k);
    const eH = gemm(qc, kc), eW = gemm(qr, kr);
    disposeAll(qc, kc, qr, kr);
    const pH = empty(eH.shape), pW = empty(eW.shape);
    run(crissCrossSoftmaxKernel(spec), [eH, eW], [pH, pW]);
    disposeAll(eH, eW);
    // Values: per column [C, H]·pHᵀ → [B, W, C, H]; per row [C, W]·pWᵀ → [B, H, C, W].
    const vc = colsChannelFirst(v), vr = rowsChannelFirst(v);
    const oc = gemm(vc, pH, { transB: true }), or = gemm(vr, pW, { transB: true });
    disposeAll(vc, vr);
    return [pH, pW, joinParts(or, [0, 2, 1, 3], oc, [0, 2, 3, 1])];
  });
  return record(out, [q, k, v], "criss_cross_attention", (g) => {
    const gc = colsChannelFirst(g), gr = rowsChannelFirst(g);
    // dv: the probabilities carry the gradient back to the attended pixels.
    let dv: Tensor | null = null;
    if (v.requiresGrad) {
      dv = joinParts(gemm(gr, pW), [0, 2, 1, 3], gemm(gc, pH), [0, 2, 3, 1]);
    }
    let dq: Tensor | null = null, dk: Tensor | null = null;
    if (q.requiresGrad || k.requiresGrad) {
      // dP = gᵀ·v per column and per row, then the joint softmax's backward.
      const vc = colsChannelFirst(v), vr = rowsChannelFirst(v);
      const gpH = gemm(gc, vc, { transA: true }), gpW = gemm(gr, vr, { transA: true });
      disposeAll(vc, vr);
      const dH = empty(pH.shape), dW = empty(pW.shape);
      run(crissCrossSoftmaxGradKernel(spec), [pH, pW, gpH, gpW], [dH, dW]);
      disposeAll(gpH, gpW);
      if (q.requiresGrad) {
        const kc = colsChannelFirst(k), kr = rowsChannelFirst(k);
        dq = joinParts(
          gemm(dW, kr, { transB: true }),
          [0, 3, 1, 2],
          gemm(dH, kc, { transB: true }),
          [0, 3, 2, 1],
        );
        disposeAll(kc, kr);
      }
      if (k.requiresGrad) {
        const qc = colsByChannel(q), qr = rowsByChannel(q);
        dk = joinParts(
          gemm(qr, dW, { transA: true }),
          [0, 2, 1, 3],
          gemm(qc, dH, { transA: true }),
          [0, 2, 3, 1],
        );
        disposeAll(qc, qr);
      }
      disposeAll(dH, dW);
    }
    disposeAll(gc, gr);
    return [dq, dk, dv];
  });
}
