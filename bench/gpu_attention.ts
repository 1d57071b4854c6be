// Attention forward + backward at CGNet's ChangeGuideModule shapes (batch 8 × 512²: 128², 64²
// and 32² positions, 32-wide keys, values in 128-wide groups), with the dK/dV backward fused
// (1 pass) or split (2 passes), and the values in 64-wide groups as an alternative grouping.
// GPU time per kernel from one profiled step each. Usage: deno run -A bench/gpu_attention.ts

import { backward } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { startProfile, stopProfile } from "../engine/kernel_profile.ts";
import { attention } from "../engine/ops/attention.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { parameter, tensor } from "../engine/tensor.ts";

await initDevice();

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin(i * 0.731 + seed));
}

// SMALL=1 divides the positions by 64 (a check that the script runs on the software adapter).
const DIV = Deno.env.get("SMALL") ? 64 : 1;
const CASES = [
  { name: "cgm_2 (128², C 256)", n: 128 * 128, c: 256 },
  { name: "cgm_3 (64², C 512)", n: 64 * 64, c: 512 },
  { name: "cgm_4 (32², C 512)", n: 32 * 32, c: 512 },
];
for (const cs of CASES) {
  const n = cs.n / DIV;
  for (const [group, passes] of [[128, 1], [128, 2], [64, 1], [64, 2]] as [number, 1 | 2][]) {
    const bh = 8 * (cs.c / group);
    const q = parameter(values(bh * n * 32, 1), [bh, 1, n, 32]);
    const k = parameter(values(bh * n * 32, 2), [bh, 1, n, 32]);
    const v = parameter(values(bh * n * group, 3), [bh, 1, n, group]);
    const dout = tensor(values(bh * n * group, 4), [bh, 1, n, group]).keep();
    const step = () =>
      scope(() => backward(attention(q, k, v, { scale: 1, kvPasses: passes }), dout));
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
    const parts = [...by].map(([l, t]) => `${l} ${t.toFixed(1)}`).join(", ");
    console.log(
      `${cs.name} values ${group}-wide, ${passes} pass(es): ${ms.toFixed(1)} ms wall; ${parts}`,
    );
    for (const t of [q, k, v]) t.dispose();
    dout.kept = false;
    dout.dispose();
  }
}
