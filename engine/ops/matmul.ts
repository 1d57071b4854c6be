// Batched matrix multiplication with broadcasting, a fused bias + activation epilogue, and a
// backward pass made of the same kernel with transpose flags (no transposed copies).
//
// Batch dims broadcast NumPy-style and are never materialised: a broadcast operand gets stride 0.
// Gradients of broadcast operands sum over the broadcast dims inside the kernel's reduction loop
// (or, when memory allows, by folding them into K), so a weight's gradient is one launch.
//
// 1×1 convolution: route it as matmul(W[Co, Ci], X[B, Ci, H·W], { bias, biasAxis: "m" }) →
// [B, Co, H·W]. W broadcasts over B at stride 0 (no copy), the channel bias is added per row in
// the epilogue; backward gives dW = Σ_b dY[b]·X[b]ᵀ in one launch (the batch folded into the
// reduction, split across workgroups when Co·Ci is small) and dX[b] = Wᵀ·dY[b].

import { broadcastShapes, fillKernel } from "../../kernels/elementwise.ts";
import {
  activationExpr,
  type BatchDim,
  type MatmulActivation,
  matmulKernel,
  splitSumKernel,
  type TileConfig,
} from "../../kernels/matmul.ts";
import { planMatmul } from "../../kernels/matmul_plan.ts";
import { prod, stridesOf } from "../../kernels/common.ts";
import { isGradEnabled, record, ruleIgnoresOutput } from "../autograd.ts";
import { addMacs } from "../profiler.ts";
import { run } from "../launch.ts";
import type { Binding } from "../recorder.ts";
import { empty, type Shape, Storage, Tensor, view } from "../tensor.ts";
import { silu } from "./activation.ts";
import { fill, map, mapNamed } from "./elementwise.ts";
import { sum } from "./reduce.ts";

export interface MatmulOptions {
  /** a is [..., K, M] (use its transpose). */
  transA?: boolean;
  /** b is [..., N, K] (use its transpose). */
  transB?: boolean;
  /** Added in the epilogue: [N] (default) or [M] with biasAxis "m". */
  bias?: Tensor;
  /** Applied after the bias, in the same write-out. With gradients recorded, SiLU (whose
   * backward needs the pre-activation) runs as a separate op after the product. */
  activation?: MatmulActivation;
  /** Which output axis the bias runs along: "n" (columns, a linear layer) or "m" (rows, the
   * channels of a 1×1 convolution). */
  biasAxis?: "n" | "m";
  /** A batch-statistics normalisation of the bias's channels follows (a 1×1 conv before a
   * BatchNorm in training): the bias gradient is exactly zero, made without a pass over the
   * output gradient (engine/ops/conv2d_launch.ts cancelledBiasGrad says why). */
  biasCancelled?: boolean;
}

export interface GemmOptions extends MatmulOptions {
  /** Batch shape of the result. Broadcast batch dims absent here (or 1 here) are summed over.
   * Default: the broadcast of both operands' batch shapes. */
  batchShape?: Shape;
  /** Force a tile and split (tests, benchmarks); default: planMatmul's choice. */
  tile?: TileConfig;
  split?: number;
  /** Write the result here (a part of a larger tensor: `rowsOf`) instead of a new tensor; it
   * must hold exactly the result's elements. */
  out?: Tensor;
  /** The new result's dtype (f16: half-precision storage, engine/precision.ts); operands'
   * dtypes (f32 or f16) are read from the tensors. */
  outDtype?: "f32" | "f16";
}

interface Dims {
  m: number;
  n: number;
  k: number;
  batch: BatchDim[];
  reduce: BatchDim[];
  outShape: number[];
}

/** Merge neighbouring dims whose strides chain (outer = inner·size) for both operands. */
function mergeDims(dims: BatchDim[]): BatchDim[] {
  const out: BatchDim[] = [];
  for (const d of dims) {
    const prev = out.at(-1);
    if (prev && prev.a === d.a * d.size && prev.b === d.b * d.size) {
      out[out.length - 1] = { size: prev.size * d.size, a: d.a, b: d.b };
    } else out.push({ ...d });
  }
  return out;
}

function analyse(a: Tensor, b: Tensor, o: GemmOptions): Dims {
  if (a.ndim < 2 || b.ndim < 2) {
    throw new Error(
      `matmul: operands need 2 or more dims, got ${a.describe()} and ${b.describe()}`,
    );
  }
  for (const t of [a, b]) {
    if (t.dtype !== "f32" && t.dtype !== "f16") {
      throw new Error(`matmul: ${t.describe()} must be f32 (or f16 storage, gemm only)`);
    }
  }
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  let m = o.transA ? ac : ar;
  let k = o.transA ? ar : ac;
  const kb = o.transB ? bc : br;
  const n = o.transB ? br : bc;
  if (k !== kb) {
    throw new Error(
      `matmul: inner dims differ: ${a.describe()}${o.transA ? "ᵀ" : ""} × ${b.describe()}${
        o.transB ? "ᵀ" : ""
      }`,
    );
  }
  const aB = a.shape.slice(0, -2), bB = b.shape.slice(0, -2);
  const full = broadcastShapes(aB, bB);
  const target = o.batchShape ? [...o.batchShape] : full;
  const aStr = stridesOf(aB).map((s) => s * m * k);
  const bStr = stridesOf(bB).map((s) => s * k * n);
  const batch: BatchDim[] = [], reduce: BatchDim[] = [];
  for (let d = 0; d < full.length; d++) {
    const size = full[d];
    const ia = d - (full.length - aB.length), ib = d - (full.length - bB.length);
    const it = d - (full.length - target.length);
    const kept = it >= 0 && target[it] === size;
    if (it >= 0 && !kept && target[it] !== 1) {
      throw new Error(`matmul: batch [${full}] cannot be summed to [${target}]`);
    }
    if (size === 1) continue;
    const dim = {
      size,
      a: ia >= 0 && aB[ia] !== 1 ? aStr[ia] : 0,
      b: ib >= 0 && bB[ib] !== 1 ? bStr[ib] : 0,
    };
    (kept ? batch : reduce).push(dim);
  }
  if (target.length > full.length) throw new Error(`matmul: batch [${target}] exceeds [${full}]`);
  let bt = mergeDims(batch);
  let rd = mergeDims(reduce);
  // A batched a against a shared b: its batch rows continue M (one big product, fewer edges).
  const lastB = bt.at(-1);
  if (
    lastB && !o.transA && lastB.b === 0 && lastB.a === m * k &&
    !(o.bias && o.biasAxis === "m")
  ) {
    m *= lastB.size;
    bt = bt.slice(0, -1);
  }
  // A summed batch dim stored right after K in both operands continues K.
  const lastR = rd.at(-1);
  if (lastR && o.transA && !o.transB && lastR.a === m * k && lastR.b === k * n) {
    k *= lastR.size;
    rd = rd.slice(0, -1);
  }
  const [rm, rn] = [o.transA ? ac : ar, o.transB ? br : bc];
  return { m, n, k, batch: bt, reduce: rd, outShape: [...target, rm, rn] };
}

/**
 * op(a) × op(b) (+ bias, activation) without autograd: the lower-level entry for other ops
 * (convolutions, attention). Result [...batchShape, M, N], contiguous.
 */
export function gemm(a: Tensor, b: Tensor, o: GemmOptions = {}): Tensor {
  const d = analyse(a, b, o);
  if (o.out && o.out.size !== prod(d.outShape)) {
    throw new Error(`matmul: out ${o.out.describe()} cannot hold [${d.outShape.join(", ")}]`);
  }
  const out = o.out ?? empty(d.outShape, o.outDtype ?? "f32");
  const biasRows = o.biasAxis === "m";
  if (o.bias) {
    const want = biasRows ? d.outShape.at(-2)! : d.n;
    if (o.bias.size !== want) {
      throw new Error(`matmul: bias ${o.bias.describe()} needs ${want} values`);
    }
  }
  if (out.size === 0) return out;
  if (d.k === 0) {
    if (o.out && (o.bias || o.activation)) {
      throw new Error("matmul: out with K = 0 and an epilogue");
    }
    return emptyProduct(out, o);
  }
  const batchCount = prod(d.batch.map((x) => x.size));
  const r = prod(d.reduce.map((x) => x.size));
  const plan = o.tile
    ? { tile: o.tile, split: o.split ?? 1 }
    : planMatmul(d.m, d.n, d.k, batchCount, r);
  // A forced split is evened out so that no part is empty.
  const slabs = r * Math.ceil(d.k / plan.tile.bk);
  const split = slabs === 0 ? 1 : Math.ceil(slabs / Math.ceil(slabs / (o.split ?? plan.split)));
  const spec = {
    m: d.m,
    n: d.n,
    k: d.k,
    transA: !!o.transA,
    transB: !!o.transB,
    batch: d.batch,
    reduce: d.reduce,
    tile: plan.tile,
    ...(a.dtype === "f16" ? { halfA: true } : {}),
    ...(b.dtype === "f16" ? { halfB: true } : {}),
  };
  const halfC = out.dtype === "f16";
  if (split === 1) {
    const inputs = o.bias ? [a, b, o.bias] : [a, b];
    run(
      matmulKernel({
        ...spec,
        bias: !!o.bias,
        biasRows,
        activation: o.activation,
        ...(halfC ? { halfC } : {}),
      }),
      inputs,
      [out],
    );
    return out;
  }
  // Partial products side by side, then one pass that sums them and applies the epilogue.
  const part = empty([split * out.size]);
  run(matmulKernel({ ...spec, split }), [a, b], [part]);
  run(
    splitSumKernel({
      splits: split,
      count: out.size,
      n: d.n,
      m: d.outShape.at(-2)!,
      bias: !!o.bias,
      biasRows,
      activation: o.activation,
      ...(halfC ? { half: true } : {}),
    }),
    o.bias ? [part, o.bias] : [part],
    [out],
  );
  part.dispose(); // recorded uses run before any later reuse of the buffer
  return out;
}

/** A product over K = 0: zeros, then the epilogue. */
function emptyProduct(out: Tensor, o: GemmOptions): Tensor {
  run(fillKernel(out.size, 0), [], [out]);
  if (!o.bias && !o.activation) return out;
  const rows = o.biasAxis === "m";
  const bias = o.bias && rows ? view(o.bias, [o.bias.size, 1]) : o.bias;
  const sum = bias ? "a + b" : "a";
  const res = map(
    "matmul_epilogue",
    o.activation ? activationExpr(o.activation, sum, "f32") : sum,
    bias ? [out, bias] : [out],
  );
  out.dispose();
  if (bias && bias !== o.bias) bias.dispose();
  return res;
}

/**
 * Batched matrix product with autograd. a is [..., M, K] ([..., K, M] with transA), b is
 * [..., K, N] ([..., N, K] with transB); batch dims broadcast. The optional bias ([N], or [M]
 * with biasAxis "m") and activation (ReLU, sigmoid, SiLU) are fused into the write-out.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  return product(a, b, opts, null);
}

/**
 * A 1×1 convolution as a product, without reshape nodes on the tape: a [..., M, K] (batch dims
 * broadcast against x's images: one weight for all, or one per image) times x [B, K, H, W] →
 * [B, M, H, W], with matmul's options (no transB). x and the result are recorded 4-D, so x's
 * gradient is the product's own new tensor, into which a later rule (a mean over x, its other
 * consumer's) can add in place; through a reshape it arrived as a view of it, which autograd
 * summed in a pass of its own.
 */
export function matmulMap(a: Tensor, x: Tensor, opts: Omit<MatmulOptions, "transB"> = {}): Tensor {
  if (x.ndim !== 4) throw new Error(`matmulMap: x ${x.describe()} must be [B, K, H, W]`);
  return product(a, x, opts, [x.shape[0], x.shape[1], x.shape[2] * x.shape[3]]);
}

/** op(a) × op(b) recorded for autograd; with `bMatrix`, b is recorded as it is and multiplied as
 * a view of that shape, and the result has b's trailing dims (matmulMap). */
function product(a: Tensor, b: Tensor, opts: MatmulOptions, bMatrix: Shape | null): Tensor {
  const { transA = false, transB = false, bias, activation } = opts;
  if (a.dtype !== "f32" || b.dtype !== "f32") throw new Error("matmul: f32 operands only");
  const inputs = bias ? [a, b, bias] : [a, b];
  if (activation === "silu" && isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    return silu(product(a, b, { ...opts, activation: undefined }, bMatrix));
  }
  // b as the product's operand: itself, or a view for one launch (b alone holds its memory).
  const withB = <T>(fn: (bm: Tensor) => T): T => {
    if (!bMatrix) return fn(b);
    const bm = view(b, bMatrix);
    try {
      return fn(bm);
    } finally {
      bm.dispose();
    }
  };
  // With bMatrix the result keeps b's trailing dims ([..., M, H, W]), written by the product
  // as its own tensor (gemm's `out` takes any shape of the right size).
  let yMatrix: Shape = [];
  const y = withB((bm) => {
    if (!bMatrix) return gemm(a, bm, opts);
    yMatrix = analyse(a, bm, opts).outShape;
    return gemm(a, bm, { ...opts, out: empty([...yMatrix.slice(0, -1), ...b.shape.slice(2)]) });
  });
  const k = transA ? a.shape[a.ndim - 2] : a.shape[a.ndim - 1];
  addMacs(y.size * k);
  // Also the recipe for y (Tensor.evict): the same product (same plan, same kernels) again
  // into the given range, from a, b and the bias, which outlive y's backward readers. A
  // projection's output that no backward rule reads (one whose consumer is a sum, a permute)
  // can go after the forward and is never written again; one that is read (a ReLU output,
  // for its own rule and the next layer's weight gradient) costs the product again. Without an
  // activation the rule reads no output (ruleIgnoresOutput).
  const again = k > 0
    ? (o: Binding) => {
      const t = new Tensor(y.shape, "f32", new Storage(o.buffer, o.offset, o.size, false));
      withB((bm) => gemm(a, bm, { ...opts, out: t }));
      t.dispose();
    }
    : undefined;
  const recorded = record(
    y,
    inputs,
    "matmul",
    (g) => {
      const gz = activation === "relu"
        ? mapNamed("relu_grad", "select(0.0, g, y > 0.0)", [["g", g], ["y", y]])
        : activation === "sigmoid"
        ? mapNamed("sigmoid_grad", "g * y * (1.0 - y)", [["g", g], ["y", y]])
        : g;
      // The products read gz as the matrix of y's shape when b has trailing dims.
      const gm = bMatrix ? view(gz, yMatrix) : gz;
      return withB((bv) => {
        const aBatch = a.shape.slice(0, -2), bBatch = bv.shape.slice(0, -2);
        // dA = dC·op(B)ᵀ (or op(B)·dCᵀ when a is stored transposed); dB likewise, into a
        // tensor of b's own shape.
        const da = !a.requiresGrad
          ? null
          : transA
          ? gemm(bv, gm, { transA: transB, transB: true, batchShape: aBatch })
          : gemm(gm, bv, { transB: !transB, batchShape: aBatch });
        const out = () => (bMatrix ? { out: empty(b.shape) } : {});
        const db = !b.requiresGrad
          ? null
          : transB
          ? gemm(gm, a, { transA: true, transB: transA, batchShape: bBatch, ...out() })
          : gemm(a, gm, { transA: !transA, batchShape: bBatch, ...out() });
        const grads: (Tensor | null)[] = [da, db];
        if (bias && bias.requiresGrad) {
          grads.push(
            opts.biasCancelled ? fill(bias.shape, 0) : biasGrad(gm, bias, opts.biasAxis === "m"),
          );
        } else if (bias) grads.push(null);
        return grads;
      });
    },
    again,
  );
  return activation ? recorded : ruleIgnoresOutput(recorded);
}

/** Σ of the gradient over every axis but the bias's. */
function biasGrad(g: Tensor, bias: Tensor, rows: boolean): Tensor {
  const keep = rows ? g.ndim - 2 : g.ndim - 1;
  const axes = g.shape.map((_, k) => k).filter((k) => k !== keep);
  const s = sum(g, axes);
  return s.shape.length === bias.shape.length ? s : view(s, bias.shape);
}
