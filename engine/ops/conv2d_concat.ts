// conv2d of a channel concatenation without the concatenation in memory. UNet++ decoders
// (SNUNet) feed every node a concat of up to six feature maps: written in the forward, written
// again for the weight gradient, and its gradient split back into the parts, 28 of SNUNet-c16's
// 252 GB a training step at 8 × 512² (bench/results/step_traffic_s16.md). Where the conv takes Winograd F(4×4)
// around the GEMM in all three passes, the input transform reads each part into its channel slab
// of V (forward and weight gradient) and the input gradient's output transform writes each part's
// gradient from its channel slab of P, so no joined tensor exists; on the fused F(4×4) routes
// (narrow convs, where the device profile allows them) the fused kernels read and write the parts
// the same way. Elsewhere it is conv2d(concat(parts)), the joined input let go after the forward
// (written again if the weight gradient needs it). convTranspose2dConcat does the same for a
// stride-1 3×3 transposed conv (FC-Siam's decoders), whose passes are its conv's three with the
// roles of input and output swapped.

import {
  type ConvGeometry,
  convGeometry,
  type Epilogue,
  NO_EPILOGUE,
} from "../../kernels/conv2d.ts";
import {
  type DgradRoute,
  type ForwardRoute,
  planDgrad,
  planForward,
  planWgrad,
  type WgradRoute,
} from "../../kernels/conv_plan.ts";
import { isGradEnabled, record, ruleIgnoresOutput } from "../autograd.ts";
import { device } from "../device.ts";
import { traceConv } from "../conv_trace.ts";
import { addMacs } from "../profiler.ts";
import { empty, type Tensor } from "../tensor.ts";
import {
  activationBackward,
  activationReadsOutput,
  checkEpilogueInputs,
  conv2d,
  type Conv2dOptions,
  convCallSpec,
  epilogueFor,
} from "./conv2d.ts";
import {
  biasGrad,
  cancelledBiasGrad,
  runWinograd4,
  runWinograd4Fused,
  winograd4FusedWeightGradRaw,
  winogradWeightGradRaw,
} from "./conv2d_launch.ts";
import { concat } from "./layout.ts";
import { convTranspose2d, type ConvTranspose2dOptions } from "./conv_transpose2d.ts";
import { convTransposeGeometry } from "../../kernels/conv_transpose2d.ts";
import type { WinoTile } from "../../kernels/winograd_math.ts";

/** The routes of conv `g`'s three computations (forward, input gradient, weight gradient). */
type Plan = { f: ForwardRoute; d: DgradRoute; w: WgradRoute };

/** The routes of `g`'s computations when each reads (or writes) parts: Winograd F(4×4) around
 * the GEMM or fused; else null. `ep` is the epilogue of the op's forward: `g`'s forward for a
 * conv, its input gradient for a transposed conv (whose weight gradient carries no bias). */
function partsPlan(
  g: ConvGeometry,
  ep: Epilogue,
  parts: number,
  transposed: boolean,
): Plan | null {
  // The fused forward binds every part, the filters, the bias and the output.
  if (g.groups !== 1 || ep.savePre) return null;
  if (parts + 3 > device().limits.maxStorageBuffersPerShaderStage) return null;
  const p = {
    f: planForward(g, transposed ? NO_EPILOGUE : ep),
    d: planDgrad(g, transposed ? ep : NO_EPILOGUE),
    w: planWgrad(g, !transposed && ep.bias),
  };
  const ok = /^winograd-f[46]-(gemm|fused)$/.test(p.f.kind) &&
    /^winograd-f[46]-(gemm|fused)-flip$/.test(p.d.kind) &&
    /^winograd-f[46](-fused)?$/.test(p.w.kind);
  return ok ? p : null;
}

/** The GEMM (not fused) route of `g`'s forward, or with `flip` its input gradient: its images
 * per launch and form (F(4×4) or F(6×6)), or null. */
function gemmRoute(plan: Plan, flip: boolean): { images: number; tile: WinoTile } | null {
  const r = flip ? plan.d : plan.f;
  if (r.kind === "winograd-f4-gemm" || r.kind === "winograd-f4-gemm-flip") {
    return { images: r.images, tile: 4 };
  }
  if (r.kind === "winograd-f6-gemm" || r.kind === "winograd-f6-gemm-flip") {
    return { images: r.images, tile: 6 };
  }
  return null;
}

/** `g`'s forward (y from x, or x's parts), or with `flip` its input gradient (dx from dy, or
 * dy's parts), on the plan's route; with `outParts` written as parts, added into those that
 * `addInto` marks (the GEMM route only: gemmRoute). */
function winoRun(
  flip: boolean,
  g: ConvGeometry,
  plan: Plan,
  input: Tensor | Tensor[],
  w: Tensor,
  ep: Epilogue,
  extra: Tensor[],
  outs: Tensor[],
  outParts?: Tensor[],
  addInto?: boolean[],
): void {
  const gemm = gemmRoute(plan, flip);
  if (gemm) {
    runWinograd4(g, input, w, flip, ep, extra, outs, gemm.images, outParts, addInto, gemm.tile);
  } else runWinograd4Fused(g, input, w, flip, ep, extra, outs, outParts);
}

/** `g`'s weight gradient from x and dy, either of which may be parts. */
function wgradRun(g: ConvGeometry, plan: Plan, x: Tensor | Tensor[], dy: Tensor | Tensor[]) {
  return plan.w.kind === "winograd-f4-fused"
    ? winograd4FusedWeightGradRaw(g, x, dy, plan.w.splits, plan.w.chunk)
    : winogradWeightGradRaw(g, x, dy, undefined, plan.w.kind === "winograd-f6" ? 6 : 4);
}

/** Gradients for the parts (null where a part needs none), written as parts by `write`: into a
 * new tensor each, or, where `into` gives a part's gradient so far (autograd's offer) and the
 * route can add in its write-out (`canAdd`), added into that one, which is returned. */
function partGrads(
  parts: Tensor[],
  into: (Tensor | undefined)[],
  canAdd: boolean,
  write: (all: Tensor[], addInto: boolean[]) => void,
): (Tensor | null)[] {
  if (!parts.some((p) => p.requiresGrad)) return parts.map(() => null);
  const addInto = parts.map((p, i) => canAdd && p.requiresGrad && !!into[i]);
  const all = parts.map((p, i) => addInto[i] ? into[i]! : empty(p.shape));
  write(all, addInto);
  return all.map((t, i) => {
    if (parts[i].requiresGrad) return t;
    t.dispose();
    return null;
  });
}

/** The parts' common batch and size, checked; their channels summed. */
function checkParts(op: string, parts: Tensor[]): [number, number, number, number] {
  const [b, , h, wd] = parts[0].shape;
  for (const p of parts) {
    if (p.ndim !== 4 || p.shape[0] !== b || p.shape[2] !== h || p.shape[3] !== wd) {
      throw new Error(
        `${op}: parts ${parts.map((t) => t.describe()).join(", ")} differ in batch or size`,
      );
    }
    if (p.dtype !== "f32") throw new Error(`${op}: ${p.describe()} must be f32`);
  }
  return [b, parts.reduce((a, p) => a + p.shape[1], 0), h, wd];
}

/** conv2d(concat(parts, 1), w, opts): parts [B, Ci_k, H, W], w [Co, ΣCi_k, kh, kw]. */
export function conv2dConcat(parts: Tensor[], w: Tensor, opts: Conv2dOptions = {}): Tensor {
  if (parts.length === 1) return conv2d(parts[0], w, opts);
  const g = convGeometry(checkParts("conv2dConcat", parts), w.shape, opts);
  return concatConv(false, g, parts, w, opts, (x) => conv2d(x, w, opts));
}

/** convTranspose2d(concat(parts, 1), w, opts): parts [B, Ci_k, H, W], w [ΣCi_k, Co, kh, kw].
 * Without a joined tensor where its computations take Winograd F(4×4) (a stride-1 3×3 one):
 * its forward is its conv's input gradient of the parts, its input gradient its conv's forward
 * written as parts, its weight gradient its conv's with the parts as dy. */
export function convTranspose2dConcat(
  parts: Tensor[],
  w: Tensor,
  opts: ConvTranspose2dOptions = {},
): Tensor {
  if (parts.length === 1) return convTranspose2d(parts[0], w, opts);
  const g = convTransposeGeometry(checkParts("convTranspose2dConcat", parts), w.shape, opts);
  return concatConv(true, g, parts, w, opts, (x) => convTranspose2d(x, w, opts));
}

/** Both ops on conv `g`: a conv's forward is `g`'s forward, a transposed conv's `g`'s input
 * gradient (and its backward the other way round). `joined` runs the op on the concatenation,
 * where the routes do not take parts. */
function concatConv(
  transposed: boolean,
  g: ConvGeometry,
  parts: Tensor[],
  w: Tensor,
  opts: Conv2dOptions | ConvTranspose2dOptions,
  joined: (x: Tensor) => Tensor,
): Tensor {
  const op = transposed ? "convTranspose2dConcat" : "conv2dConcat";
  const act = opts.activation ?? "none";
  const bias = opts.bias ?? null;
  checkEpilogueInputs(op, transposed ? g.ci : g.co, act, bias, opts.preluSlope);
  const inputs = [...parts, w, ...(bias ? [bias] : [])];
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const ep = epilogueFor(act, bias, opts.preluSlope, recording);
  const plan = w.dtype === "f32" && !opts.preluSlope
    ? partsPlan(g, ep, parts.length, transposed)
    : null;
  if (!plan) {
    // The concatenation is let go after the forward (written again if a rule reads it).
    const x = concat(parts, 1);
    const y = joined(x);
    x.evict();
    return y;
  }
  const inputGrad = recording && parts.some((p) => p.requiresGrad);
  const weightGrad = recording && w.requiresGrad;
  const call = convCallSpec(
    transposed ? "convTranspose2d" : "conv2d",
    g,
    act,
    bias,
    opts.biasCancelled,
    recording,
  );
  traceConv({ ...call, inputGrad, weightGrad });
  // The op's forward is g's forward (a transposed conv's: g's input gradient); the parts'
  // gradient the other one.
  const y = empty(transposed ? [g.batch, g.ci, g.h, g.w] : [g.batch, g.co, g.ho, g.wo]);
  winoRun(transposed, g, plan, parts, w, ep, bias ? [bias] : [], [y]);
  addMacs(g.batch * g.co * g.ho * g.wo * g.ci * g.kh * g.kw);
  // The parts' gradients can be added into pending ones by the GEMM route's output transform.
  const canAdd = gemmRoute(plan, !transposed) !== null;
  const out = record(y, inputs, transposed ? "conv_transpose2d_concat" : "conv2d_concat", (
    gy,
    into,
  ) => {
    const gz = activationBackward(act, gy, y, null);
    // A transposed conv's parts are its conv's dy.
    const dw = w.requiresGrad
      ? (transposed ? wgradRun(g, plan, gz, parts) : wgradRun(g, plan, parts, gz))
      : null;
    const db = !bias?.requiresGrad
      ? null
      : opts.biasCancelled
      ? cancelledBiasGrad(bias.size)
      : biasGrad(gz);
    const dx = partGrads(
      parts,
      into ?? [],
      canAdd,
      (all, addInto) => winoRun(!transposed, g, plan, gz, w, NO_EPILOGUE, [], [], all, addInto),
    );
    return [...dx, dw, ...(bias ? [db] : [])];
  });
  return activationReadsOutput(act) ? out : ruleIgnoresOutput(out);
}
