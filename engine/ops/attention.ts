// Scaled dot-product attention in the form kernels/attention_plan.ts picks: flash style (memory
// grows with Lq + Lk, never Lq × Lk; the forward saves the per-row logsumexp and the backward
// recomputes probabilities from it), or matrix products over chunks of materialised scores
// (attention_gemm.ts) for long key ranges and heads too wide for the flash kernels.

import {
  attentionBackwardKVKernel,
  attentionBackwardQKernel,
  attentionForwardKernel,
  type AttentionSpec,
  keyValuePlan,
} from "../../kernels/attention.ts";
import { type GemmAttentionPlan, planAttention } from "../../kernels/attention_plan.ts";
import { rowDotKernel } from "../../kernels/attention_rows.ts";
import { reduceKernel } from "../../kernels/reduce.ts";
import { record } from "../autograd.ts";
import { device } from "../device.ts";
import { run } from "../launch.ts";
import { addMacs } from "../profiler.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import { attentionGemmBackward, attentionGemmForward } from "./attention_gemm.ts";

export interface AttentionOptions {
  /** Multiplies q·k before the softmax (default 1/√D). */
  scale?: number;
  /** Force the dK/dV backward into one kernel or two (tests, benchmarks); default by size. */
  kvPasses?: 1 | 2;
  /** Force the flash kernels or the GEMM form (tests, benchmarks); default by shape. */
  route?: "flash" | "gemm";
  /** Bytes of scores per chunk of the GEMM form (tests); default GEMM_CHUNK_BYTES. */
  chunkBytes?: number;
}

function specOf(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): AttentionSpec {
  const bad = () =>
    new Error(
      `attention: q ${q.describe()}, k ${k.describe()}, v ${v.describe()} must be ` +
        "[B, H, Lq, D], [B, H, Lk, D], [B, H, Lk, Dv] f32",
    );
  if ([q, k, v].some((t) => t.ndim !== 4 || t.dtype !== "f32")) throw bad();
  const [b, h, lq, d] = q.shape;
  const [kb, kh, lk, kd] = k.shape;
  const [vb, vh, vl, dv] = v.shape;
  if (kb !== b || vb !== b || kh !== h || vh !== h || kd !== d || vl !== lk) throw bad();
  const s: AttentionSpec = { bh: b * h, lq, lk, d, dv, scale: opts.scale ?? 1 / Math.sqrt(d) };
  if (opts.kvPasses) s.kvPasses = opts.kvPasses;
  return s;
}

/** Sum `partial` ([splits, ...shape]) over its first axis into a tensor of `shape`. */
function sumSplits(partial: Tensor, splits: number, shape: readonly number[]): Tensor {
  const out = empty(shape);
  run(reduceKernel({ shape: [splits, out.size], axes: [0], op: "sum" }), [partial], [out]);
  partial.dispose();
  return out;
}

/** softmax(q kᵀ · scale) v per batch and head: q [B, H, Lq, D], k [B, H, Lk, D],
 * v [B, H, Lk, Dv] → [B, H, Lq, Dv]. Lq and Lk may differ (cross-attention). */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: AttentionOptions = {},
): Tensor {
  const s = specOf(q, k, v, opts);
  addMacs(s.bh * s.lq * s.lk * (s.d + s.dv)); // q·kᵀ and p·v
  const limits = device().limits;
  const plan = planAttention(
    s,
    {
      align: limits.minStorageBufferOffsetAlignment,
      maxBinding: limits.maxStorageBufferBindingSize,
    },
    opts.route,
    opts.chunkBytes,
  );
  if (plan.route === "gemm") return gemmAttention(s, plan, q, k, v);
  const [b, h, lq] = q.shape;
  const out = empty([b, h, lq, s.dv]);
  const lse = empty([b, h, lq]);
  run(attentionForwardKernel(s), [q, k, v], [out, lse]);
  record(out, [q, k, v], "attention", (g) => {
    const dlt = empty([b, h, lq]);
    let dq: Tensor | null = null;
    if (q.requiresGrad) {
      dq = empty(q.shape);
      run(attentionBackwardQKernel(s), [q, k, v, out, g, lse], [dq, dlt]);
    } else run(rowDotKernel({ rows: s.bh * s.lq, n: s.dv }), [out, g], [dlt]);
    let dk: Tensor | null = null, dv: Tensor | null = null;
    if (k.requiresGrad || v.requiresGrad) {
      const { splits, passes } = keyValuePlan(s);
      const lead = splits > 1 ? [splits] : [];
      const inputs = [q, k, v, g, lse, dlt];
      if (passes === 1) {
        dk = empty([...lead, ...k.shape]);
        dv = empty([...lead, ...v.shape]);
        run(attentionBackwardKVKernel(s), inputs, [dk, dv]);
        if (!k.requiresGrad) dk = (dk.dispose(), null);
        if (!v.requiresGrad) dv = (dv.dispose(), null);
      } else {
        // Separate passes: each runs only when its gradient is wanted.
        if (k.requiresGrad) {
          run(attentionBackwardKVKernel(s, "k"), inputs, [dk = empty([...lead, ...k.shape])]);
        }
        if (v.requiresGrad) {
          run(attentionBackwardKVKernel(s, "v"), [q, k, g, lse], [
            dv = empty([...lead, ...v.shape]),
          ]);
        }
      }
      if (splits > 1) {
        if (dk) dk = sumSplits(dk, splits, k.shape);
        if (dv) dv = sumSplits(dv, splits, v.shape);
      }
    }
    dlt.dispose();
    return [dq, dk, dv];
  });
  // Without a tape the logsumexp has no reader: give its memory back now.
  if (!out.requiresGrad) lse.dispose();
  return out;
}

/** The GEMM form with its backward: q, k, v and the output are all it keeps. */
function gemmAttention(
  s: AttentionSpec,
  plan: GemmAttentionPlan,
  q: Tensor,
  k: Tensor,
  v: Tensor,
): Tensor {
  const flat = attentionGemmForward(s, plan, q, k, v);
  const out = view(flat, [...q.shape.slice(0, 3), s.dv]);
  flat.dispose();
  record(out, [q, k, v], "attention", (g) => {
    const want = { q: q.requiresGrad, k: k.requiresGrad, v: v.requiresGrad };
    const grads = attentionGemmBackward(s, plan, q, k, v, out, g, want);
    return grads.map((t, i) => {
      if (!t) return null;
      const shaped = view(t, [q, k, v][i].shape);
      t.dispose();
      return shaped;
    });
  });
  return out;
}
