// What bounds a model's training step against torch.compile (issue 17): per convolution pass of
// one step, its multiply-adds and the bytes it must move, as we run it and as compile's cuDNN
// does, and the time of each at the card's rates; a pass's floor is the larger of the two.
// Multiplies: Winograd F(2×2) does 16/36, F(4×4) 36/144 and F(6×6) 64/324 of a direct conv's;
// the rest, and
// cuDNN (direct, on TF32 tensor cores), all of them. Bytes: every pass reads its two operands and
// writes its result once (f32); our F(4×4) routes also write and read their transformed operands
// in global memory (V and P, 36/16 of the tiled image each, 64/36 for F(6×6);
// kernels/conv2d_winograd4.ts), the
// fused F(2×2) and F(4×4) kernels do not (the fused weight gradient writes and reads its partial
// sums per split instead). These are floors: norms, activations, concats, the loss and the
// optimiser (which compile fuses into few passes) come on top, and so do L2 misses.
// The convolutions come from a dry forward under the H100 profile (no kernel runs), as the
// route table's do (tests/engine/conv_routes_h100.txt), so this runs on the software adapter.
//   deno run -A bench/roofline.ts [--models fc_ef,tinycd] [--f32 44.3] [--tf32 358] [--bw 3.35]
//     [--measured bench/results/train_step_h100_s15.jsonl] [--fused-wino4-max 64] [--winograd6]
// Rates in TFLOP/s (2 FLOP per multiply-add) and TB/s; the defaults are session 14's H100
// figures (bench/results/tensor_cores_h100_s14.md: our f32 matmul at 4096³, cuBLAS TF32 at
// 4096³) and the H100 SXM's nominal HBM3 bandwidth.
// --measured prints the steps measured in that file (ours, torch.compile) beside the floors;
// --fused-wino4-max C plans with the fused F(4×4) kernel up to C channels (the profile's 0: off);
// --winograd6 with F(6×6) on the GEMM routes where its tiles fit (the profile's default: off).

import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { initDevice } from "../engine/device.ts";
import type { ConvCall } from "../engine/conv_trace.ts";
import type { ConvGeometry } from "../kernels/conv2d.ts";
import { type ConvRoute, planConv } from "../kernels/conv_plan.ts";
import { type DeviceProfile, H100_PROFILE, setActiveProfile } from "../kernels/device_profile.ts";
import { modelConvCalls } from "../tests/engine/conv_route_calls.ts";

/** A direct convolution's multiply-adds: every output of every channel, over its taps. */
export function directMacs(g: ConvGeometry): number {
  return g.batch * g.co * g.ho * g.wo * (g.ci / g.groups) * g.kh * g.kw;
}

/** Multiply-adds of one pass as `route` runs it. Winograd tiles its output (a conv's output,
 * or its input for the flipped input gradient) into m×m tiles of (m+2)² products per channel
 * pair; padding to whole tiles included. */
export function routeMacs(c: ConvCall, pass: "forward" | "inputGrad" | "weightGrad", r: ConvRoute) {
  const g = c.g;
  // The image a Winograd pass tiles: the conv's output, except for the input gradient (and a
  // transposed conv's forward, which is its conv's input gradient).
  const ontoInput = (pass === "inputGrad") !== (c.op === "convTranspose2d");
  const [h, w] = ontoInput && pass !== "weightGrad" ? [g.h, g.w] : [g.ho, g.wo];
  const wino = (m: number) =>
    g.batch * Math.ceil(h / m) * Math.ceil(w / m) * (m + 2) ** 2 * (g.ci / g.groups) * g.co;
  switch (r.kind) {
    case "winograd-f2":
    case "winograd-f2-flip":
      return wino(2);
    case "winograd-f4-gemm":
    case "winograd-f4-gemm-flip":
    case "winograd-f4-fused":
    case "winograd-f4-fused-flip":
    case "winograd-f4":
      return wino(4);
    case "winograd-f6-gemm":
    case "winograd-f6-gemm-flip":
    case "winograd-f6":
      return wino(6);
    default:
      return directMacs(g);
  }
}

/** Bytes one pass moves at least: its two operands read and its result written once (f32); an
 * F(4×4) or F(6×6) GEMM route also writes and reads V and P, (m+2)²/m² of its tiled operands. */
export function passBytes(c: ConvCall, r: ConvRoute | null): number {
  const g = c.g;
  const x = g.batch * g.ci * g.h * g.w, y = g.batch * g.co * g.ho * g.wo;
  const w = g.co * (g.ci / g.groups) * g.kh * g.kw;
  let elems = x + y + w;
  const m = r && (r.kind === "winograd-f4-gemm" || r.kind === "winograd-f4-gemm-flip" ||
      r.kind === "winograd-f4")
    ? 4
    : r && (r.kind === "winograd-f6-gemm" || r.kind === "winograd-f6-gemm-flip" ||
        r.kind === "winograd-f6")
    ? 6
    : 0;
  if (m) {
    const tiles = g.batch * Math.ceil(g.ho / m) * Math.ceil(g.wo / m);
    elems += 2 * (m + 2) ** 2 * tiles * (g.ci + g.co); // V and P (or V and W), written and read
  }
  // The fused weight gradient's partial sums per split of the tiles, written and read.
  if (r?.kind === "winograd-f4-fused" && "splits" in r) elems += 2 * r.splits * 36 * g.ci * g.co;
  return 4 * elems;
}

interface Floors {
  convs: number;
  direct: number;
  ours: number;
  /** Seconds: the sum over passes of max(arithmetic, memory), ours and cuDNN's; forward only. */
  oursS: number;
  compileS: number;
  oursForwardS: number;
  compileForwardS: number;
  oursBytes: number;
  compileBytes: number;
}

/** One step's conv passes at batch 8 × 512²: multiply-adds and floors at the given rates (MAC/s,
 * byte/s). */
export function stepFloors(
  model: string,
  f32: number,
  tf32: number,
  bw: number,
  profile: DeviceProfile = H100_PROFILE,
): Floors {
  const f: Floors = {
    convs: 0,
    direct: 0,
    ours: 0,
    oursS: 0,
    compileS: 0,
    oursForwardS: 0,
    compileForwardS: 0,
    oursBytes: 0,
    compileBytes: 0,
  };
  for (const c of modelConvCalls(model, 8, 512)) {
    f.convs++;
    const passes = (["forward", "inputGrad", "weightGrad"] as const).filter((p) =>
      p === "forward" || (p === "inputGrad" ? c.inputGrad : c.weightGrad)
    );
    for (const p of passes) {
      const route = planConv(c, p, profile);
      const d = directMacs(c.g), o = routeMacs(c, p, route);
      const ob = passBytes(c, route), cb = passBytes(c, null);
      const os = Math.max(o / f32, ob / bw), cs = Math.max(d / tf32, cb / bw);
      f.direct += d;
      f.ours += o;
      f.oursBytes += ob;
      f.compileBytes += cb;
      f.oursS += os;
      f.compileS += cs;
      if (p === "forward") {
        f.oursForwardS += os;
        f.compileForwardS += cs;
      }
    }
  }
  return f;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      models: { type: "string", default: "fc_ef,fc_siam_conc,fc_siam_diff,tinycd,snunet_c16" },
      f32: { type: "string", default: "44.3" },
      tf32: { type: "string", default: "358" },
      bw: { type: "string", default: "3.35" },
      "fused-wino4-max": { type: "string", default: "0" },
      winograd6: { type: "boolean", default: false },
      measured: { type: "string", default: "bench/results/train_step_h100_s15.jsonl" },
    },
  });
  await initDevice();
  setActiveProfile(H100_PROFILE);
  const f32 = Number(values.f32) * 1e12 / 2, tf32 = Number(values.tf32) * 1e12 / 2; // MAC/s
  const bw = Number(values.bw) * 1e12;
  const measured = new Map<string, { train: number; infer: number }>();
  if (values.measured && existsSync(values.measured)) {
    for (const line of Deno.readTextFileSync(values.measured).split("\n")) {
      if (!line.startsWith("{")) continue;
      const r = JSON.parse(line);
      measured.set(`${r.model} ${r.impl}`, { train: r.train_ms, infer: r.infer_ms });
    }
  }
  const ms = (s: number) => (1e3 * s).toFixed(1);
  console.log(
    `Conv passes of one training step at batch 8 × 512² (H100 routes): multiply-adds, bytes, and ` +
      `floors at ${values.f32} TFLOP/s (our f32 matmul), ${values.tf32} (TF32 tensor cores) and ` +
      `${values.bw} TB/s` + (measured.size ? `; measured from ${values.measured}` : "") + "\n",
  );
  console.log(
    "| model | convs | GMAC direct / our routes | GB moved: ours / compulsory | conv floor ms, train step: ours / cuDNN | measured train ms: ours / compile | conv floor ms, inference: ours / cuDNN | measured inference ms: ours / compile |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const model of values.models!.split(",")) {
    const profile = {
      ...H100_PROFILE,
      fusedWino4MaxChannels: Number(values["fused-wino4-max"]),
      winograd6: values.winograd6,
    };
    const f = stepFloors(model, f32, tf32, bw, profile);
    const ours = measured.get(`${model} cd-engine`),
      comp = measured.get(`${model} pytorch-compile`);
    console.log(
      `| ${model} | ${f.convs} | ${(f.direct / 1e9).toFixed(0)} / ${(f.ours / 1e9).toFixed(0)} | ` +
        `${(f.oursBytes / 1e9).toFixed(1)} / ${(f.compileBytes / 1e9).toFixed(1)} | ` +
        `${ms(f.oursS)} / ${ms(f.compileS)} | ${ours?.train ?? "–"} / ${comp?.train ?? "–"} | ` +
        `${ms(f.oursForwardS)} / ${ms(f.compileForwardS)} | ${ours?.infer ?? "–"} / ${
          comp?.infer ?? "–"
        } |`,
    );
  }
}
