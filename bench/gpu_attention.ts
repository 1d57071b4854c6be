// Attention forward + backward at the models' shapes (batch 8 × 512²), flash kernels against the
// GEMM form (kernels/attention_plan.ts picks between them): CGNet's ChangeGuideModules (128², 64²,
// 32² positions, C/8-wide keys, C-wide values; flash runs the values in 128-wide groups),
// HANet's row attention at 1/1 and 1/2, MiT-b1's stages and BIT's decoder. Wall time per step
// and GPU time per kernel from one profiled step.
// Usage: deno run -A bench/gpu_attention.ts [--only NAME] (SMALL=1: a quick run on the
// software adapter at 1/64 of the positions).

import { parseArgs } from "node:util";
import { backward } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { startProfile, stopProfile } from "../engine/kernel_profile.ts";
import { attention } from "../engine/ops/attention.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { parameter, tensor } from "../engine/tensor.ts";
import { MAX_HEAD } from "../kernels/attention.ts";
import { planAttention } from "../kernels/attention_plan.ts";
import { device } from "../engine/device.ts";

const { values: args } = parseArgs({ args: Deno.args, options: { only: { type: "string" } } });
await initDevice();

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin(i * 0.731 + seed));
}

interface Case {
  name: string;
  bh: number;
  lq: number;
  lk: number;
  d: number;
  dv: number;
}

const DIV = Deno.env.get("SMALL") ? 64 : 1;
const CASES: Case[] = [
  { name: "cgnet cgm_2", bh: 8, lq: 16384, lk: 16384, d: 32, dv: 256 },
  { name: "cgnet cgm_3", bh: 8, lq: 4096, lk: 4096, d: 64, dv: 512 },
  { name: "cgnet cgm_4", bh: 8, lq: 1024, lk: 1024, d: 64, dv: 512 },
  { name: "hanet row 1/1", bh: 8 * 512, lq: 512, lk: 512, d: 40, dv: 40 },
  { name: "hanet row 1/2", bh: 8 * 256, lq: 256, lk: 256, d: 80, dv: 80 },
  { name: "hanet row 1/4", bh: 8 * 128, lq: 128, lk: 128, d: 160, dv: 160 },
  { name: "mit-b1 stage 1", bh: 8, lq: 16384, lk: 256, d: 64, dv: 64 },
  { name: "mit-b1 stage 3", bh: 8 * 5, lq: 1024, lk: 256, d: 64, dv: 64 },
  { name: "bit decoder", bh: 8 * 8, lq: 4096, lk: 4, d: 8, dv: 8 },
].map((c) => ({ ...c, lq: Math.max(4, c.lq / DIV), lk: Math.max(4, c.lk / DIV) }));

const limits = {
  align: device().limits.minStorageBufferOffsetAlignment,
  maxBinding: device().limits.maxStorageBufferBindingSize,
};

/** One timed configuration: `groups` value groups of dv / groups (flash's way with wide values). */
async function measure(cs: Case, route: "flash" | "gemm", groups: number): Promise<void> {
  const dv = cs.dv / groups, bh = cs.bh * groups;
  const q = parameter(values(bh * cs.lq * cs.d, 1), [bh, 1, cs.lq, cs.d]);
  const k = parameter(values(bh * cs.lk * cs.d, 2), [bh, 1, cs.lk, cs.d]);
  const v = parameter(values(bh * cs.lk * dv, 3), [bh, 1, cs.lk, dv]);
  const dout = tensor(values(bh * cs.lq * dv, 4), [bh, 1, cs.lq, dv]).keep();
  const step = () => scope(() => backward(attention(q, k, v, { scale: 0.1, route }), dout));
  step();
  await sync();
  const t0 = performance.now();
  for (let i = 0; i < 3; i++) step();
  await sync();
  const ms = (performance.now() - t0) / 3;
  startProfile();
  step();
  await sync();
  const rows = await stopProfile();
  const by = new Map<string, number>();
  for (const r of rows) {
    const l = r.label.split(" [")[0];
    by.set(l, (by.get(l) ?? 0) + r.ms);
  }
  const gpu = [...by.values()].reduce((a, b) => a + b, 0);
  const parts = [...by].sort((a, b) => b[1] - a[1]).map(([l, t]) => `${l} ${t.toFixed(1)}`);
  const plan = route === "gemm"
    ? JSON.stringify(
      planAttention({ bh, lq: cs.lq, lk: cs.lk, d: cs.d, dv, scale: 1 }, limits, "gemm"),
    )
    : "";
  console.log(
    `${cs.name} ${route}${groups > 1 ? ` (${groups} value groups)` : ""}: ${ms.toFixed(1)} ms ` +
      `wall, ${gpu.toFixed(1)} ms GPU; ${parts.join(", ")} ${plan}`,
  );
  for (const t of [q, k, v]) t.dispose();
  dout.kept = false;
  dout.dispose();
}

for (const cs of CASES) {
  if (args.only && !cs.name.includes(args.only)) continue;
  const groups = Math.max(1, Math.ceil(Math.max(cs.d, cs.dv) / MAX_HEAD));
  const chosen = planAttention({ ...cs, scale: 1 }, limits).route;
  console.log(`== ${JSON.stringify(cs)}; default route ${chosen}`);
  if (cs.d <= MAX_HEAD) await measure(cs, "flash", groups);
  await measure(cs, "gemm", 1);
}
