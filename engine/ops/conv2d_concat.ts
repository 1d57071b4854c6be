// conv2d of a channel concatenation without the concatenation in memory. UNet++ decoders
// (SNUNet) feed every node a concat of up to six feature maps: written in the forward, written
// again for the weight gradient, and its gradient split back into the parts, 28 of SNUNet-c16's
// 252 GB a training step at 8 × 512² (bench/results/step_traffic_s16.md). Where the conv takes Winograd F(4×4)
// around the GEMM in all three passes, the input transform reads each part into its channel slab
// of V (forward and weight gradient) and the input gradient's output transform writes each part's
// gradient from its channel slab of P, so no joined tensor exists; on the fused F(4×4) routes
// (narrow convs, where the device profile allows them) the fused kernels read and write the parts
// the same way. Elsewhere it is conv2d(concat(parts)), the joined input let go after the forward
// (written again if the weight gradient needs it).

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
  epilogueFor,
} from "./conv2d.ts";
import {
  biasGrad,
  runWinograd4,
  runWinograd4Fused,
  winograd4FusedWeightGradRaw,
  winogradWeightGradRaw,
} from "./conv2d_launch.ts";
import { concat } from "./layout.ts";

type Plan = { f: ForwardRoute; d: DgradRoute; w: WgradRoute };

/** The routes of the three passes of `g` when each reads (or writes) parts: Winograd F(4×4)
 * around the GEMM or fused; else null. */
function partsPlan(g: ConvGeometry, ep: Epilogue, parts: number): Plan | null {
  // The fused forward binds every part, the filters, the bias and the output.
  if (g.groups !== 1 || ep.savePre) return null;
  if (parts + 3 > device().limits.maxStorageBuffersPerShaderStage) return null;
  const p = { f: planForward(g, ep), d: planDgrad(g), w: planWgrad(g, ep.bias) };
  const ok = /^winograd-f4-(gemm|fused)$/.test(p.f.kind) &&
    /^winograd-f4-(gemm|fused)-flip$/.test(p.d.kind) && /^winograd-f4(-fused)?$/.test(p.w.kind);
  return ok ? p : null;
}

/** conv2d(concat(parts, 1), w, opts): parts [B, Ci_k, H, W], w [Co, ΣCi_k, kh, kw]. */
export function conv2dConcat(parts: Tensor[], w: Tensor, opts: Conv2dOptions = {}): Tensor {
  if (parts.length === 1) return conv2d(parts[0], w, opts);
  const [b, , h, wd] = parts[0].shape;
  for (const p of parts) {
    if (p.ndim !== 4 || p.shape[0] !== b || p.shape[2] !== h || p.shape[3] !== wd) {
      throw new Error(
        `conv2dConcat: parts ${parts.map((t) => t.describe()).join(", ")} differ in batch or size`,
      );
    }
    if (p.dtype !== "f32") throw new Error(`conv2dConcat: ${p.describe()} must be f32`);
  }
  const ci = parts.reduce((a, p) => a + p.shape[1], 0);
  const g = convGeometry([b, ci, h, wd], w.shape, opts);
  const act = opts.activation ?? "none";
  const bias = opts.bias ?? null;
  checkEpilogueInputs("conv2dConcat", g.co, act, bias, opts.preluSlope);
  const inputs = [...parts, w, ...(bias ? [bias] : [])];
  const recording = isGradEnabled() && inputs.some((t) => t.requiresGrad);
  const ep = epilogueFor(act, bias, opts.preluSlope, recording);
  const plan = w.dtype === "f32" && !opts.preluSlope ? partsPlan(g, ep, parts.length) : null;
  if (!plan) {
    const joined = concat(parts, 1);
    const y = conv2d(joined, w, opts);
    joined.evict();
    return y;
  }
  const inputGrad = recording && parts.some((p) => p.requiresGrad);
  const weightGrad = recording && w.requiresGrad;
  traceConv({ op: "conv2d", g, activation: act, bias: !!bias, recording, inputGrad, weightGrad });
  const y = empty([g.batch, g.co, g.ho, g.wo]);
  const extra = bias ? [bias] : [];
  if (plan.f.kind === "winograd-f4-gemm") {
    runWinograd4(g, parts, w, false, ep, extra, [y], plan.f.images);
  } else runWinograd4Fused(g, parts, w, false, ep, extra, [y]);
  addMacs(g.batch * g.co * g.ho * g.wo * g.ci * g.kh * g.kw);
  const out = record(y, inputs, "conv2d_concat", (gy) => {
    const gz = activationBackward(act, gy, y, null);
    let dw: Tensor | null = null;
    if (w.requiresGrad) {
      dw = plan.w.kind === "winograd-f4-fused"
        ? winograd4FusedWeightGradRaw(g, parts, gz, plan.w.splits, plan.w.chunk)
        : winogradWeightGradRaw(g, parts, gz);
    }
    const db = bias?.requiresGrad ? biasGrad(gz) : null;
    let dx: (Tensor | null)[] = parts.map(() => null);
    if (parts.some((p) => p.requiresGrad)) {
      const all = parts.map((p) => empty(p.shape));
      if (plan.d.kind === "winograd-f4-gemm-flip") {
        runWinograd4(g, gz, w, true, NO_EPILOGUE, [], [], plan.d.images, all);
      } else runWinograd4Fused(g, gz, w, true, NO_EPILOGUE, [], [], all);
      dx = all.map((t, i) => {
        if (parts[i].requiresGrad) return t;
        t.dispose();
        return null;
      });
    }
    return [...dx, dw, ...(bias ? [db] : [])];
  });
  return activationReadsOutput(act) ? out : ruleIgnoresOutput(out);
}
