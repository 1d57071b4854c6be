// Attention as matrix products over materialised scores, a chunk of heads (or of one head's
// queries) at a time, so the scores never exceed the plan's chunk (kernels/attention_plan.ts):
//   forward   S = Q Kᵀ, P = softmax(scale·S) over S, O = P V;
//   backward  S and P again, dV = Pᵀ dO, dP = dO Vᵀ, dS = scale·P ⊙ (dP − D) over dP with
//             D = rowsum(dO ⊙ O), dQ = dS K, dK = dSᵀ Q.
// Every product is the register-tiled matmul kernel writing straight into its part of the
// result (rowsOf); where one head's queries are sliced, dK and dV are per-slice partial sums
// added at the end. Nothing but q, k, v and the output is kept for the backward.

import type { AttentionSpec } from "../../kernels/attention.ts";
import type { GemmAttentionPlan } from "../../kernels/attention_plan.ts";
import {
  rowDotKernel,
  softmaxGradRowsKernel,
  softmaxRowsKernel,
} from "../../kernels/attention_rows.ts";
import { reduceKernel } from "../../kernels/reduce.ts";
import { run } from "../launch.ts";
import { aliasAlignment, empty, rowsOf, type Tensor } from "../tensor.ts";
import { gemm } from "./matmul.ts";

/** One chunk: heads [h0, h0 + heads), queries [r0, r0 + rows), partial-sum slot `slice`. */
interface Chunk {
  h0: number;
  heads: number;
  r0: number;
  rows: number;
  slice: number;
}

function* chunks(s: AttentionSpec, p: GemmAttentionPlan): Generator<Chunk> {
  if (p.slices === 1) {
    for (let h0 = 0; h0 < s.bh; h0 += p.heads) {
      yield { h0, heads: Math.min(p.heads, s.bh - h0), r0: 0, rows: s.lq, slice: 0 };
    }
    return;
  }
  for (let h0 = 0; h0 < s.bh; h0++) {
    for (let slice = 0; slice < p.slices; slice++) {
      const r0 = slice * p.rows;
      yield { h0, heads: 1, r0, rows: Math.min(p.rows, s.lq - r0), slice };
    }
  }
}

/** Rows [r0, r0 + rows) of heads [h0, h0 + heads) of a [bh, len, width] tensor (one head
 * when rows are sliced). */
function part(t: Tensor, len: number, width: number, c: Chunk): Tensor {
  const start = (c.h0 * len + c.r0) * width;
  return rowsOf(t, start, [c.heads, c.rows, width]);
}

/** All of a chunk's heads' rows of a [bh, len, width] tensor. */
function heads(t: Tensor, len: number, width: number, c: Chunk): Tensor {
  return rowsOf(t, c.h0 * len * width, [c.heads, len, width]);
}

/** P = softmax(scale · Q Kᵀ) of one chunk, [heads, rows, lk]. */
function probabilities(s: AttentionSpec, q: Tensor, k: Tensor, c: Chunk): Tensor {
  const qc = part(q, s.lq, s.d, c), kc = heads(k, s.lk, s.d, c);
  const p = gemm(qc, kc, { transB: true });
  run(softmaxRowsKernel({ rows: c.heads * c.rows, n: s.lk, scale: s.scale }), [], [p]);
  qc.dispose();
  kc.dispose();
  return p;
}

/** The output [bh, lq, dv] of q [bh, lq, d], k [bh, lk, d], v [bh, lk, dv] (any head sizes). */
export function attentionGemmForward(
  s: AttentionSpec,
  p: GemmAttentionPlan,
  q: Tensor,
  k: Tensor,
  v: Tensor,
): Tensor {
  const out = empty([s.bh, s.lq, s.dv]);
  for (const c of chunks(s, p)) {
    const pr = probabilities(s, q, k, c);
    const vc = heads(v, s.lk, s.dv, c), oc = part(out, s.lq, s.dv, c);
    gemm(pr, vc, { out: oc });
    for (const t of [pr, vc, oc]) t.dispose();
  }
  return out;
}

/** Gradients of q, k and v (null where not wanted) from the output and its gradient `g`. */
export function attentionGemmBackward(
  s: AttentionSpec,
  p: GemmAttentionPlan,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  g: Tensor,
  want: { q: boolean; k: boolean; v: boolean },
): [Tensor | null, Tensor | null, Tensor | null] {
  const dlt = empty([s.bh, s.lq]);
  run(rowDotKernel({ rows: s.bh * s.lq, n: s.dv }), [out, g], [dlt]);
  // Where one head's queries are sliced, dK and dV are per-slice partial sums, each slice's
  // [bh, lk, width] padded to an aligned offset.
  const stride = (width: number) =>
    p.slices === 1 ? 0 : Math.ceil((s.bh * s.lk * width * 4) / aliasAlignment()) *
      aliasAlignment() / 4;
  const partials = (width: number) =>
    p.slices === 1 ? empty([s.bh, s.lk, width]) : empty([p.slices * stride(width)]);
  const dq = want.q ? empty([s.bh, s.lq, s.d]) : null;
  const dk = want.k ? partials(s.d) : null;
  const dv = want.v ? partials(s.dv) : null;
  const slot = (t: Tensor, width: number, c: Chunk) =>
    rowsOf(t, c.slice * stride(width) + c.h0 * s.lk * width, [c.heads, s.lk, width]);
  for (const c of chunks(s, p)) {
    const pr = probabilities(s, q, k, c);
    const gc = part(g, s.lq, s.dv, c);
    if (dv) {
      const dvc = slot(dv, s.dv, c);
      gemm(pr, gc, { transA: true, out: dvc });
      dvc.dispose();
    }
    if (dq || dk) {
      const vc = heads(v, s.lk, s.dv, c);
      const ds = gemm(gc, vc, { transB: true });
      vc.dispose();
      const dc = rowsOf(dlt, c.h0 * s.lq + c.r0, [c.heads * c.rows]);
      run(softmaxGradRowsKernel({ rows: c.heads * c.rows, n: s.lk, scale: s.scale }), [pr, dc], [
        ds,
      ]);
      dc.dispose();
      if (dq) {
        const kc = heads(k, s.lk, s.d, c), dqc = part(dq, s.lq, s.d, c);
        gemm(ds, kc, { out: dqc });
        kc.dispose();
        dqc.dispose();
      }
      if (dk) {
        const qc = part(q, s.lq, s.d, c), dkc = slot(dk, s.d, c);
        gemm(ds, qc, { transA: true, out: dkc });
        qc.dispose();
        dkc.dispose();
      }
      ds.dispose();
    }
    pr.dispose();
    gc.dispose();
  }
  dlt.dispose();
  const sumSlices = (t: Tensor | null, width: number): Tensor | null => {
    if (!t || p.slices === 1) return t;
    const sum = empty([stride(width)]);
    run(reduceKernel({ shape: [p.slices, sum.size], axes: [0], op: "sum" }), [t], [sum]);
    t.dispose();
    const grad = rowsOf(sum, 0, [s.bh, s.lk, width]);
    sum.dispose();
    return grad;
  };
  return [dq, sumSlices(dk, s.d), sumSlices(dv, s.dv)];
}
