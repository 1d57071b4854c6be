// Launches of the convolution kernels, no autograd: each takes the route kernels/conv_plan.ts
// chose (the active device profile's, unless one is given) and records its dispatches. The conv
// ops (conv2d.ts, conv_transpose2d.ts) wrap these in autograd; benchmarks and tests call them
// directly to time or check one route.

import { type ConvGeometry, type Epilogue, NO_EPILOGUE } from "../../kernels/conv2d.ts";
import { col2imKernel } from "../../kernels/conv2d_columns.ts";
import { directConvKernel } from "../../kernels/conv2d_direct.ts";
import { tapExpandKernel } from "../../kernels/conv2d_tap_expand.ts";
import {
  dgradWinogradSpec,
  forwardWinogradSpec,
  winogradKernel,
  type WinogradSpec,
  winogradWeightKernel,
  winogradWeightShape,
} from "../../kernels/conv2d_winograd.ts";
import {
  winograd4OutputKernel,
  winograd4WeightKernel,
  winograd4WeightShape,
} from "../../kernels/conv2d_winograd4.ts";
import {
  implicitGemmKernel,
  packWeightsKernel,
  splitSumKernel,
} from "../../kernels/conv2d_gemm.ts";
import type { ImplicitGemmSpec } from "../../kernels/conv2d_gemm_plan.ts";
import {
  wgradGradTransformKernel,
  wgradInputTransformKernel,
  wgradOutputTransformKernel,
  WINO4_ELEMENTS,
  winoWgradBytesPerImage,
  type WinoWgradSpec,
  winoWgradSpec,
  winoWgradTiles,
} from "../../kernels/conv2d_winograd_wgrad.ts";
import { winoScheme, type WinoTile } from "../../kernels/winograd_math.ts";
import {
  splitReduceKernel,
  wgradColumns,
  wgradDirectKernel,
  wgradGemmKernel,
} from "../../kernels/conv2d_wgrad.ts";
import {
  type DgradRoute,
  type ForwardRoute,
  planDgrad,
  planForward,
  planWgrad,
  planWgradKernels,
  type WgradRoute,
  WINO_WGRAD_CHUNK_BYTES,
} from "../../kernels/conv_plan.ts";
import { winograd4FusedKernel } from "../../kernels/conv2d_winograd4_fused.ts";
import { fusedWgradKernel } from "../../kernels/conv2d_winograd4_fused_wgrad.ts";
import { run } from "../launch.ts";
import { halfStorage } from "../precision.ts";
import { empty, type Tensor, view } from "../tensor.ts";
import { small1x1MixRaw, small1x1WeightGradRaw } from "./conv1x1_small.ts";
import { add, fill } from "./elementwise.ts";
import { gemm } from "./matmul.ts";
import { sum } from "./reduce.ts";

/** Forward launch: y = act(conv(x, w) + bias), and the pre-activation when the epilogue saves
 * it. */
export function convForwardRaw(
  g: ConvGeometry,
  x: Tensor,
  w: Tensor,
  ep: Epilogue = NO_EPILOGUE,
  extra: Tensor[] = [],
  route: ForwardRoute = planForward(g, ep),
): { y: Tensor; pre: Tensor | null } {
  if (route.kind === "small1x1-mix") return small1x1MixRaw(g, "forward", x, w, ep, extra);
  const shape = [g.batch, g.co, g.ho, g.wo];
  const y = empty(shape);
  const pre = ep.savePre ? empty(shape) : null;
  const outs = pre ? [y, pre] : [y];
  if (route.kind === "winograd-f2") {
    runWinograd(forwardWinogradSpec(g, ep), x, w, false, extra, outs);
  } else if (route.kind === "winograd-f4-gemm" || route.kind === "winograd-f6-gemm") {
    runWinograd4(g, x, w, false, ep, extra, outs, route.images, undefined, undefined, route.tile);
  } else if (route.kind === "winograd-f4-fused") {
    runWinograd4Fused(g, x, w, false, ep, extra, outs);
  } else if (route.kind === "direct") {
    run(directConvKernel({ mode: "forward", geom: g, epilogue: ep }), [x, w, ...extra], outs);
  } else {
    runImplicitGemm(route.spec, x, w, extra, outs);
  }
  return { y, pre };
}

/** Gradient w.r.t. the input of conv geometry `g` (a transposed conv of dy); the epilogue (bias
 * per input channel, activation) serves the transposed-conv forward. */
export function convInputGradRaw(
  g: ConvGeometry,
  dy: Tensor,
  w: Tensor,
  ep: Epilogue = NO_EPILOGUE,
  extra: Tensor[] = [],
  route: DgradRoute = planDgrad(g, ep),
): { y: Tensor; pre: Tensor | null } {
  if (route.kind === "small1x1-mix") return small1x1MixRaw(g, "dgrad", dy, w, ep, extra);
  const shape = [g.batch, g.ci, g.h, g.w];
  const y = empty(shape);
  const pre = ep.savePre ? empty(shape) : null;
  const outs = pre ? [y, pre] : [y];
  if (route.kind === "winograd-f2-flip") {
    runWinograd(dgradWinogradSpec(g, ep), dy, w, true, extra, outs);
  } else if (route.kind === "winograd-f4-gemm-flip" || route.kind === "winograd-f6-gemm-flip") {
    runWinograd4(g, dy, w, true, ep, extra, outs, route.images, undefined, undefined, route.tile);
  } else if (route.kind === "winograd-f4-fused-flip") {
    runWinograd4Fused(g, dy, w, true, ep, extra, outs);
  } else if (route.kind === "col2im") {
    runCol2im(g, dy, w, ep, extra, outs);
  } else if (route.kind === "tap-expand") {
    run(tapExpandKernel({ geom: g, epilogue: ep }), [dy, w, ...extra], outs);
  } else if (route.kind === "direct") {
    run(directConvKernel({ mode: "dgrad", geom: g, epilogue: ep }), [dy, w, ...extra], outs);
  } else {
    for (const spec of route.specs) runImplicitGemm(spec, dy, w, extra, outs);
  }
  return { y, pre };
}

/** Gradient w.r.t. the weight [Co, Ci/groups, kh, kw] (and the bias [Co] when asked) of conv
 * geometry `g`, from its input x and output gradient dy. */
export function convWeightGradRaw(
  g: ConvGeometry,
  x: Tensor,
  dy: Tensor,
  withBias: boolean,
  route: WgradRoute = planWgrad(g, withBias),
): { dw: Tensor; db: Tensor | null } {
  switch (route.kind) {
    case "small1x1-wgrad":
      return small1x1WeightGradRaw(g, x, dy, withBias);
    case "winograd-f4":
    case "winograd-f6":
      return {
        dw: winogradWeightGradRaw(g, x, dy, undefined, route.tile),
        db: withBias ? biasGrad(dy) : null,
      };
    case "winograd-f4-fused":
      return {
        dw: winograd4FusedWeightGradRaw(g, x, dy, route.splits, route.chunk),
        db: withBias ? biasGrad(dy) : null,
      };
  }
  const cols = wgradColumns(g, false);
  const dw = empty([g.co, g.ci / g.groups, g.kh, g.kw]);
  const db = withBias ? empty([g.co]) : null;
  const cols1 = cols + (withBias ? 1 : 0);
  const { splits, chunk } = route;
  let part: Tensor;
  if (route.kind === "direct") {
    part = empty([splits, g.co, cols1]);
    run(wgradDirectKernel({ geom: g, bias: withBias, splits, chunk, rw: route.rw }), [x, dy], [
      part,
    ]);
  } else {
    part = splits === 1 && !withBias ? dw : empty([splits, g.co, cols1]);
    const spec = { geom: g, bias: withBias, splits, chunk, tile: route.tile };
    run(wgradGemmKernel(spec), [x, dy], [part]);
  }
  if (part !== dw) {
    run(
      splitReduceKernel({ splits, co: g.co, cols, bias: withBias }),
      [part],
      db ? [dw, db] : [dw],
    );
    part.dispose();
  }
  return { dw, db };
}

/** convWeightGradRaw on the conv kernels alone (Winograd, direct or split GEMM), without the
 * small 1×1 route (tests and benchmarks compare the two). */
export function kernelWeightGradRaw(
  g: ConvGeometry,
  x: Tensor,
  dy: Tensor,
  withBias: boolean,
): { dw: Tensor; db: Tensor | null } {
  return convWeightGradRaw(g, x, dy, withBias, planWgradKernels(g, withBias));
}

/** `w` rearranged for a GEMM with packedWeights. */
export function packWeights(spec: ImplicitGemmSpec, w: Tensor): Tensor {
  const taps = spec.nty * spec.ntx;
  const packed = empty([spec.groups * taps * spec.rg * Math.ceil(spec.mg / 4) * 4]);
  run(packWeightsKernel(spec), [w], [packed]);
  return packed;
}

/** One implicit-GEMM launch writing `outs` (after packing `w` when the spec reads packed
 * weights); a split reduction writes [splits, ...out] partial sums that splitSumKernel adds up
 * with the epilogue. */
export function runImplicitGemm(
  spec: ImplicitGemmSpec,
  input: Tensor,
  w: Tensor,
  extra: Tensor[],
  outs: Tensor[],
): void {
  const splits = spec.splits ?? 1;
  const wp = spec.packedWeights ? packWeights(spec, w) : w;
  if (splits === 1) {
    run(implicitGemmKernel(spec), [input, wp, ...extra], outs);
  } else {
    const part = empty([splits, ...outs[0].shape]);
    run(implicitGemmKernel(spec), [input, wp], [part]);
    const hw = spec.outH * spec.outW;
    const sum = { splits, batch: spec.batch, outC: spec.outC, hw, epilogue: spec.epilogue };
    run(splitSumKernel(sum), [part, ...extra], outs);
    part.dispose();
  }
  if (wp !== w) wp.dispose();
}

/** A Winograd launch: the filters transformed to [groups, 16, R, Mp] (transposed and flipped for an
 * input gradient), then the fused kernel writing `outs`. */
export function runWinograd(
  spec: WinogradSpec,
  input: Tensor,
  w: Tensor,
  flip: boolean,
  extra: Tensor[],
  outs: Tensor[],
): void {
  const shape = winogradWeightShape(spec);
  const u = empty(shape);
  const ws = { m: spec.m, r: spec.r, groups: spec.groups, mp: shape[3], flip };
  run(winogradWeightKernel(ws), [w], [u]);
  run(winogradKernel(spec), [input, u, ...extra], outs);
  u.dispose();
}

/** The conv a Winograd F(4×4) or F(6×6) launch computes (`g`'s forward, or with `flip` its input
 * gradient's conv of dy: filters transposed and flipped, padding 2 − pad) and its filters
 * transformed to U [E, groups·M, R] (the caller disposes of `u`). */
function winograd4Conv(g: ConvGeometry, w: Tensor, flip: boolean, tile: WinoTile = 4) {
  const [r, m, inH, inW, outH, outW, padY, padX] = flip
    ? [g.co, g.ci, g.ho, g.wo, g.h, g.w, 2 - g.padY, 2 - g.padX]
    : [g.ci, g.co, g.h, g.w, g.ho, g.wo, g.padY, g.padX];
  const ws = {
    m: m / g.groups,
    r: r / g.groups,
    groups: g.groups,
    flip,
    ...(tile === 6 ? { tile } : {}),
  };
  const u = empty(winograd4WeightShape(ws));
  run(winograd4WeightKernel(ws), [w], [u]);
  return { r, m, inH, inW, outH, outW, padY, padX, u };
}

/** The channels of each part of a concatenation. */
const partChannels = (parts: Tensor[]) => parts.map((t) => t.shape[1]);
const asList = (t: Tensor | Tensor[]) => (Array.isArray(t) ? t : [t]);

/** One chunk's tile transform, "input" (x → V [36, Ci, T]) or "grad" (dy → W [36, Co, T]), of
 * one tensor or of the parts of a channel concatenation, each into its channel slab (one group;
 * a transposed conv's input is its conv's dy). */
function tileTransform(
  side: "input" | "grad",
  ts: WinoWgradSpec,
  src: Tensor | Tensor[],
  dst: Tensor,
): void {
  const k = side === "input" ? wgradInputTransformKernel : wgradGradTransformKernel;
  if (!Array.isArray(src)) return run(k(ts), [src], [dst]);
  const field = side === "input" ? "ci" : "co";
  let at = 0;
  for (const part of src) {
    const c = part.shape[1];
    run(k({ ...ts, [field]: c, dstChannels: ts[field], dstOffset: at }), [part], [dst]);
    at += c;
  }
}

/** A Winograd F(4×4) (or with `tile` 6 F(6×6)) launch of conv `g` (its input gradient with
 * `flip`: a conv of dy with the filters transposed and flipped, padded by 2 − pad) writing
 * `outs`, `images` at a time: the filters transformed to U [E, M, R], then per chunk of images the
 * input transform, the batched GEMM and the output transform with the epilogue
 * (kernels/conv2d_winograd4.ts). The input may be the parts of a channel concatenation, and with
 * `outParts` (no epilogue, `outs` empty) the output is written as such parts, each its channels
 * (engine/ops/conv2d_concat.ts), or added into those whose `addInto` entry is true (a gradient
 * summed in the write-out); one group. */
export function runWinograd4(
  g: ConvGeometry,
  input: Tensor | Tensor[],
  w: Tensor,
  flip: boolean,
  ep: Epilogue,
  extra: Tensor[],
  outs: Tensor[],
  images: number,
  outParts?: Tensor[],
  addInto?: boolean[],
  tile: WinoTile = 4,
): void {
  const G = g.groups;
  if ((Array.isArray(input) || outParts) && G !== 1) {
    throw new Error("runWinograd4: concatenation parts need one group");
  }
  const E = winoScheme(tile).elements;
  const form = tile === 6 ? { tile } : {};
  const { r, m, inH, inW, outH, outW, padY, padX, u } = winograd4Conv(g, w, flip, tile);
  const uv = view(u, [E * G, m / G, r / G]);
  // Under halfInference every input here is an activation (no tape, no backward): V and P in f16.
  const half = halfStorage();
  const dtype = half ? "f16" : "f32";
  for (let n0 = 0; n0 < g.batch; n0 += images) {
    const batch = Math.min(images, g.batch - n0);
    const ts = {
      ...(half ? { half } : {}),
      ...form,
      batch,
      n0,
      ci: r,
      co: m,
      groups: G,
      h: inH,
      w: inW,
      ho: outH,
      wo: outW,
      padY,
      padX,
    };
    const { t } = winoWgradTiles(ts);
    const v = empty([E, r, t], dtype);
    tileTransform("input", ts, input, v);
    const vv = view(v, [E * G, r / G, t]);
    const p = gemm(uv, vv, { outDtype: dtype });
    const os = {
      batch,
      n0,
      channels: m,
      outH,
      outW,
      epilogue: ep,
      ...(half ? { half } : {}),
      ...form,
    };
    if (!outParts) run(winograd4OutputKernel(os), [p, ...extra], outs);
    else {
      let at = 0;
      for (const [k, part] of outParts.entries()) {
        const c = part.shape[1];
        const epilogue = addInto?.[k] ? { ...ep, accumulate: true } : ep;
        const ps = { ...os, channels: c, pChannels: m, pOffset: at, epilogue };
        run(winograd4OutputKernel(ps), [p], [part]);
        at += c;
      }
    }
    for (const a of [v, vv, p]) a.dispose();
  }
  uv.dispose();
  u.dispose();
}

/** The same convolution (forward, or with `flip` the input gradient's conv of dy) by the fused
 * F(4×4) kernel: no transformed operand leaves the chip (kernels/conv2d_winograd4_fused.ts). One
 * group only. The input may be the parts of a channel concatenation, and with `outParts` (no
 * epilogue, `outs` empty) the output is written as such parts (engine/ops/conv2d_concat.ts). */
export function runWinograd4Fused(
  g: ConvGeometry,
  input: Tensor | Tensor[],
  w: Tensor,
  flip: boolean,
  ep: Epilogue,
  extra: Tensor[],
  outs: Tensor[],
  outParts?: Tensor[],
): void {
  if (g.groups !== 1) throw new Error("runWinograd4Fused: one group only");
  const { u, ...conv } = winograd4Conv(g, w, flip);
  const spec = {
    batch: g.batch,
    ...conv,
    epilogue: ep,
    ...(Array.isArray(input) ? { inParts: partChannels(input) } : {}),
    ...(outParts ? { outParts: partChannels(outParts) } : {}),
  };
  run(winograd4FusedKernel(spec), [...asList(input), u, ...extra], outParts ?? outs);
  u.dispose();
}

/** The input gradient as cols = Wᵀ × dy (the matmul kernel) and a gather of cols into `outs`
 * with the epilogue (kernels/conv2d_columns.ts). */
export function runCol2im(
  g: ConvGeometry,
  dy: Tensor,
  w: Tensor,
  ep: Epilogue,
  extra: Tensor[],
  outs: Tensor[],
): void {
  const w2 = view(w, [g.co, g.ci * g.kh * g.kw]);
  const dy2 = view(dy, [g.batch, g.co, g.ho * g.wo]);
  const cols = gemm(w2, dy2, { transA: true });
  w2.dispose();
  dy2.dispose();
  run(col2imKernel({ geom: g, epilogue: ep }), [cols, ...extra], outs);
  cols.dispose();
}

/** Weight gradient [Co, Ci / groups, 3, 3] of a 3×3 stride-1 conv by Winograd F(4×4, 3×3) (or
 * with `tile` 6 F(6×6, 3×3)): the input patches and output-gradient tiles transformed, one batched
 * GEMM over the tiles per transform element, the result transformed back
 * (kernels/conv2d_winograd_wgrad.ts); images go in chunks of at most `chunkBytes` of transformed
 * operands. x or dy may be the parts of a channel concatenation (one group). */
export function winogradWeightGradRaw(
  g: ConvGeometry,
  x: Tensor | Tensor[],
  dy: Tensor | Tensor[],
  chunkBytes = WINO_WGRAD_CHUNK_BYTES,
  tile: WinoTile = 4,
): Tensor {
  const E = winoScheme(tile).elements;
  const per = Math.max(1, Math.floor(chunkBytes / winoWgradBytesPerImage(g, tile)));
  let m: Tensor | null = null;
  for (let n0 = 0; n0 < g.batch; n0 += per) {
    const s = winoWgradSpec(g, n0, Math.min(per, g.batch - n0), tile);
    const { t } = winoWgradTiles(s);
    const v = empty([E, g.ci, t]);
    tileTransform("input", s, x, v);
    const w = empty([E, g.co, t]);
    tileTransform("grad", s, dy, w);
    const eg = E * g.groups;
    const [wv, vv] = [view(w, [eg, g.co / g.groups, t]), view(v, [eg, g.ci / g.groups, t])];
    const part = gemm(wv, vv, { transB: true });
    for (const a of [v, w, wv, vv]) a.dispose();
    if (m) {
      const sum: Tensor = add(m, part);
      m.dispose();
      part.dispose();
      m = sum;
    } else m = part;
  }
  const dw = empty([g.co, g.ci / g.groups, 3, 3]);
  run(wgradOutputTransformKernel(winoWgradSpec(g, 0, g.batch, tile)), [m!], [dw]);
  m!.dispose();
  return dw;
}

/** The same weight gradient by the fused kernel (kernels/conv2d_winograd4_fused_wgrad.ts):
 * partial products per split of the tiles, summed by the output transform. One group only; x or
 * dy may be the parts of a channel concatenation. */
export function winograd4FusedWeightGradRaw(
  g: ConvGeometry,
  x: Tensor | Tensor[],
  dy: Tensor | Tensor[],
  splits: number,
  chunk: number,
): Tensor {
  if (g.groups !== 1) throw new Error("winograd4FusedWeightGradRaw: one group only");
  const { batch, ci, co, h, w, ho, wo, padY, padX } = g;
  const spec = {
    ...{ batch, ci, co, h, w, ho, wo, padY, padX, splits, chunk },
    ...(Array.isArray(x) ? { inParts: partChannels(x) } : {}),
    ...(Array.isArray(dy) ? { gradParts: partChannels(dy) } : {}),
  };
  const part = empty([splits, WINO4_ELEMENTS, co, ci]);
  run(fusedWgradKernel(spec), [...asList(x), ...asList(dy)], [part]);
  const dw = empty([co, ci, 3, 3]);
  run(wgradOutputTransformKernel(winoWgradSpec(g), splits), [part], [dw]);
  part.dispose();
  return dw;
}

/** Bias gradient on its own (when the weight needs none): Σ over batch, height, width. */
export function biasGrad(gz: Tensor): Tensor {
  return sum(gz, [0, 2, 3]);
}

/** The bias gradient of a conv that a batch-statistics normalisation follows (the options'
 * biasCancelled): exactly zero, with no pass over dy. The normalisation subtracts each
 * channel's batch mean, so the loss does not depend on the bias; summing dy gives rounding
 * noise instead (PyTorch's: about 1e-9 of dy's scale), which AdamW would scale up into steps of
 * about a tenth of the learning rate in random directions. */
export function cancelledBiasGrad(channels: number): Tensor {
  return fill([channels], 0);
}
