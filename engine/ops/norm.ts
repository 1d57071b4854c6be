// Batch and instance normalisation over NCHW (any rank ≥ 2: dimensions after the channel one
// form the plane), with their backward. Statistics are two-stage reductions
// (kernels/norm_stats.ts).

import {
  normApplyKernel,
  normGradKernel,
  normGradSumsPartialKernel,
  type NormPost,
} from "../../kernels/norm.ts";
import {
  chunkFor,
  groupCount,
  momentsFinishKernel,
  momentsPartialKernel,
  partialCount,
  type PlaneLayout,
  planeSumsPartialKernel,
  type PlaneSumsSpec,
  type StatGroup,
  sumsFinishKernel,
} from "../../kernels/norm_stats.ts";
import { f, prod } from "../../kernels/common.ts";
import { record } from "../autograd.ts";
import { type Operand, run } from "../launch.ts";
import { seedBinding } from "./dropout.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import { map } from "./elementwise.ts";
import { sum } from "./reduce.ts";

export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  /** Running statistics [C], updated in place in training. Without them the batch statistics
   * are used in eval too (PyTorch's track_running_stats = False). */
  runningMean?: Tensor | null;
  runningVar?: Tensor | null;
  training: boolean;
  momentum?: number;
  eps?: number;
  /** Fuse a ReLU (and Dropout2d) or a SiLU into the output. */
  post?: NormPostOptions;
}

/** A ReLU, then optionally Dropout2d, or a SiLU, applied to the norm's output in the same pass
 * (and folded into its backward): batchNorm2d(x, {post}) equals
 * reluDropout2d(batchNorm2d(x), p, {training, seed}), relu(batchNorm2d(x)) without dropout, or
 * silu(batchNorm2d(x)) with activation "silu" (whose backward recomputes the norm's output from
 * x instead of keeping it). */
export interface NormPostOptions {
  /** Default "relu". */
  activation?: "relu" | "silu";
  dropout?: { p: number; training: boolean; seed: number };
}

export interface InstanceNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  eps?: number;
}

export function planeLayout(x: Tensor): PlaneLayout {
  if (x.ndim < 2) throw new Error(`normalisation needs [B, C, ...], got ${x.describe()}`);
  return { batch: x.shape[0], channels: x.shape[1], planeSize: prod(x.shape.slice(2)) };
}

function checkChannelParam(t: Tensor | null | undefined, c: number, what: string): void {
  if (t && t.size !== c) throw new Error(`${what} ${t.describe()} does not match ${c} channels`);
}

/** Two-stage sums of WGSL terms over plane chunks, grouped by channel, plane or everything:
 * one [groups] tensor per term. */
export function planeSums(
  spec: Omit<PlaneSumsSpec, "chunk">,
  inputs: Tensor[],
  group: StatGroup,
  /** With spec.map: the elementwise result's tensor (x's size), written in the same pass. */
  out?: Tensor,
): Tensor[] {
  const l = spec.layout;
  const chunk = chunkFor(l.planeSize);
  const part = empty([partialCount(l, chunk) * spec.terms.length]);
  if (!spec.map !== !out) throw new Error(`${spec.name}: give both map and its output, or neither`);
  run(planeSumsPartialKernel({ ...spec, chunk }), inputs, out ? [part, out] : [part]);
  const outs = spec.terms.map(() => empty([groupCount(l, group)]));
  run(sumsFinishKernel({ layout: l, chunk, group, terms: spec.terms.length }), [part], outs);
  part.dispose();
  return outs;
}

/** Mean and 1/sqrt(var + eps) of x per group, updating running statistics when given. */
function moments(
  x: Tensor,
  l: PlaneLayout,
  group: "channel" | "plane",
  eps: number,
  running?: { mean: Tensor; var: Tensor; momentum: number },
): { mean: Tensor; rstd: Tensor } {
  const chunk = chunkFor(l.planeSize);
  const part = empty([partialCount(l, chunk) * 2]);
  run(momentsPartialKernel(l, chunk), [x], [part]);
  const mean = empty([groupCount(l, group)]);
  const rstd = empty([groupCount(l, group)]);
  run(
    momentsFinishKernel({ layout: l, chunk, group, eps, runningMomentum: running?.momentum }),
    [part],
    running ? [mean, rstd, running.mean, running.var] : [mean, rstd],
  );
  part.dispose();
  return { mean, rstd };
}

interface PlaneNormArgs {
  group: "channel" | "plane";
  weight: Tensor | null;
  bias: Tensor | null;
  mean: Tensor;
  rstd: Tensor;
  /** Statistics of this batch (their gradient flows into dx) or fixed ones (eval). */
  batchStats: boolean;
  post?: NormPostOptions;
}

/** The kernels' form of the fused post-activation: the drop probability, when dropping. */
function kernelPost(o: NormPostOptions | undefined): { post?: NormPost; seed: number } {
  if (!o) return { seed: 0 };
  if (o.activation === "silu") {
    if (o.dropout) throw new Error("batchNorm2d post: dropout follows a ReLU only, not a SiLU");
    return { post: { act: "silu" }, seed: 0 };
  }
  const d = o.dropout;
  if (d && !(d.p >= 0 && d.p < 1)) {
    throw new Error(`batchNorm2d post dropout: p must lie in [0, 1), got ${d.p}`);
  }
  return d?.training && d.p > 0 ? { post: { dropP: d.p }, seed: d.seed } : { post: {}, seed: 0 };
}

function planeNorm(name: string, x: Tensor, a: PlaneNormArgs): Tensor {
  const l = planeLayout(x);
  const { weight, bias, mean, rstd, group } = a;
  const { post, seed } = kernelPost(a.post);
  const y = empty(x.shape);
  const k = normApplyKernel({ layout: l, group, weight: !!weight, bias: !!bias, post });
  const ins = [x, mean, rstd, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  // Also the recipe for y (recompute): x is what the backward keeps anyway, the statistics are
  // this forward's (the running ones move once, in moments), the dropout mask comes from the
  // seed again; bit-identical to the first write.
  const apply = (out: Operand) =>
    run(k, [...ins, ...(post?.dropP ? [seedBinding(seed)] : [])], [out]);
  apply(y);
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  // The gradient at the norm's output: g itself, or rebuilt by the kernels from (gy, y) after a
  // ReLU, from gy and the norm's output recomputed from x (and w, b) after a SiLU.
  const silu = post?.act === "silu";
  const gradIn = (g: Tensor) => (post && !silu ? [g, y] : [g]);
  const w = weight ? [weight] : [];
  const affine = silu ? [...w, ...(bias ? [bias] : [])] : [];
  const flags = { weight: !!weight, bias: !!bias };
  return record(y, inputs, name, (g, into) => {
    const needW = !!weight?.requiresGrad;
    const needB = !!bias?.requiresGrad;
    let sg: Tensor | null = null, sgx: Tensor | null = null;
    if (needW || needB || (x.requiresGrad && a.batchStats)) {
      const chunk = chunkFor(l.planeSize);
      const part = empty([partialCount(l, chunk) * 2]);
      run(
        normGradSumsPartialKernel(l, chunk, group, post, silu ? flags : undefined),
        [x, ...gradIn(g), mean, rstd, ...affine],
        [part],
      );
      sg = empty([groupCount(l, group)]);
      sgx = empty([groupCount(l, group)]);
      run(sumsFinishKernel({ layout: l, chunk, group, terms: 2 }), [part], [sg, sgx]);
      part.dispose();
    }
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      // Added into x's gradient so far where autograd offers it (SNUNet's residual conv).
      const accumulate = !!into?.[0];
      dx = into?.[0] ?? empty(x.shape);
      const spec = {
        layout: l,
        group,
        weight: !!weight,
        batchStats: a.batchStats,
        post,
        accumulate,
      };
      run(
        normGradKernel(silu ? { ...spec, bias: !!bias } : spec),
        a.batchStats
          ? [x, ...gradIn(g), mean, rstd, sg!, sgx!, ...(silu ? affine : w)]
          : silu
          ? [x, g, mean, rstd, ...affine]
          : [...gradIn(g), rstd, ...w],
        [dx],
      );
    }
    // Per-channel parameter gradients: instance statistics are per plane, summed over the batch.
    const perChannel = (t: Tensor, like: Tensor) =>
      group === "channel"
        ? view(t, like.shape)
        : view(sum(view(t, [l.batch, l.channels]), 0), like.shape);
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(needW ? perChannel(sgx!, weight) : null);
    if (bias) grads.push(needB ? perChannel(sg!, bias) : null);
    return grads;
  }, apply);
}

/** Batch normalisation of [B, C, ...]: batch statistics (biased variance over B and the plane)
 * in training, which also moves the running statistics (unbiased variance, as PyTorch);
 * running statistics in eval. */
export function batchNorm2d(x: Tensor, o: BatchNormOptions): Tensor {
  const l = planeLayout(x);
  const { momentum = 0.1, eps = 1e-5 } = o;
  const weight = o.weight ?? null, bias = o.bias ?? null;
  const rm = o.runningMean ?? null, rv = o.runningVar ?? null;
  checkChannelParam(weight, l.channels, "batchNorm2d weight");
  checkChannelParam(bias, l.channels, "batchNorm2d bias");
  checkChannelParam(rm, l.channels, "batchNorm2d runningMean");
  checkChannelParam(rv, l.channels, "batchNorm2d runningVar");
  if (!rm !== !rv) throw new Error("batchNorm2d needs both runningMean and runningVar, or none");
  const useBatch = o.training || !rm;
  let mean: Tensor, rstd: Tensor;
  if (useBatch) {
    if (l.batch * l.planeSize < 2 && o.training) {
      throw new Error(
        `batchNorm2d in training needs more than one value per channel (${x.describe()})`,
      );
    }
    const running = o.training && rm && rv ? { mean: rm, var: rv, momentum } : undefined;
    ({ mean, rstd } = moments(x, l, "channel", eps, running));
  } else {
    // Copies, so that a later training step's in-place update cannot change this backward.
    mean = map("bn_running_mean", "a", [rm!]);
    rstd = map("bn_running_rstd", `inverseSqrt(a + ${f(eps)})`, [rv!]);
  }
  return planeNorm("batch_norm", x, {
    group: "channel",
    weight,
    bias,
    mean,
    rstd,
    batchStats: useBatch,
    post: o.post,
  });
}

/** Instance normalisation of [B, C, ...]: statistics per sample and channel, in training and
 * eval alike; optional per-channel affine. */
export function instanceNorm2d(x: Tensor, o: InstanceNormOptions = {}): Tensor {
  const l = planeLayout(x);
  const { eps = 1e-5 } = o;
  const weight = o.weight ?? null, bias = o.bias ?? null;
  checkChannelParam(weight, l.channels, "instanceNorm2d weight");
  checkChannelParam(bias, l.channels, "instanceNorm2d bias");
  const { mean, rstd } = moments(x, l, "plane", eps);
  return planeNorm("instance_norm", x, {
    group: "plane",
    weight,
    bias,
    mean,
    rstd,
    batchStats: true,
  });
}
