// Winograd F(2×2) fused against F(4×4) and F(6×6) around the GEMM (kernels/conv2d_winograd4.ts)
// and F(4×4) fused (kernels/conv2d_winograd4_fused.ts, one group only), forward and input
// gradient, and the weight gradient by F(4×4) and F(6×6) around the GEMM against the fused one
// (kernels/conv2d_winograd4_fused_wgrad.ts, one group only), on
// every distinct 3×3 stride-1 convolution that the registered models
// route to Winograd at batch 8 × 512² (read from tests/engine/conv_routes_h100.txt), so that
// kernels/conv_plan.ts's WINO4_MIN_CHANNELS rests on measurements. GPU time by timestamps, the
// mean of 3 runs after a warm one; `err` is the F(4×4) forms' largest difference from F(2×2)
// relative to the output's largest magnitude (`err6` F(6×6)'s). One JSON line per layer, largest
// first, then a summary
// (the 22 layers of bench/results/winograd4_h100_s12.md took 200 s, mostly pipeline compiles).
// Usage: deno run -A bench/gpu_winograd4.ts [--small] [--only SUBSTRING] [--min-channels 16]
// [--max-channels 64]

import { parseArgs } from "node:util";
import { initDevice } from "../engine/device.ts";
import { GpuClock } from "../engine/gpu_clock.ts";
import {
  runWinograd,
  runWinograd4,
  runWinograd4Fused,
  winograd4FusedWeightGradRaw,
  winogradWeightGradRaw,
} from "../engine/ops/conv2d_launch.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { empty, type Tensor, tensor } from "../engine/tensor.ts";
import { type ConvGeometry, convGeometry, NO_EPILOGUE } from "../kernels/conv2d.ts";
import { H100_PROFILE } from "../kernels/device_profile.ts";
import { dgradWinogradSpec, forwardWinogradSpec } from "../kernels/conv2d_winograd.ts";
import {
  fusedWgradSplits,
  winograd4Images,
  winograd6Pays,
  winogradFitsDgrad,
  winogradWgradFits,
} from "../kernels/conv_plan.ts";

const { values } = parseArgs({
  options: {
    small: { type: "boolean", default: false },
    only: { type: "string" },
    "min-channels": { type: "string", default: "16" },
    "max-channels": { type: "string" },
  },
});
await initDevice();
const minCh = Number(values["min-channels"]);
const maxCh = values["max-channels"] ? Number(values["max-channels"]) : Infinity;

/** Distinct Winograd layers of the route table: [ci, co, groups, pad, batch, h, w]. */
function layers(): number[][] {
  const text = Deno.readTextFileSync(
    new URL("../tests/engine/conv_routes_h100.txt", import.meta.url),
  );
  const lines = text.split("\n");
  const seen = new Map<string, number[]>();
  lines.forEach((l, i) => {
    if (!l.startsWith("conv ") || !/fwd winograd/.test(lines[i + 1] ?? "")) return;
    const m = l.match(/^conv (\d+)->(\d+) k3x3 s1x1 p(\d)x\d(?: g(\d+))? @(\d+)x(\d+)x(\d+)/);
    if (!m) return;
    const [ci, co, pad, groups, b, h, w] = [m[1], m[2], m[3], m[4] ?? "1", m[5], m[6], m[7]]
      .map(Number);
    if (Math.min(ci, co) / groups < minCh || Math.max(ci, co) > maxCh) return;
    const key = `${ci}->${co} g${groups} p${pad} @${b}x${h}x${w}`;
    if (values.only && !key.includes(values.only)) return;
    seen.set(
      key,
      values.small ? [ci, co, groups, pad, 1, h / 16, w / 16] : [ci, co, groups, pad, b, h, w],
    );
  });
  // Largest first: a call that runs out of time has measured the layers that matter most.
  const flop = ([ci, co, g, , b, h, w]: number[]) => co * (ci / g) * b * h * w;
  return [...seen.values()].sort((a, b) => flop(b) - flop(a));
}

function fill(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * 0.5);
}

async function time(f: () => Tensor): Promise<{ ms: number; out: Float32Array }> {
  const first = scope(f);
  await sync();
  const out = (await first.read()) as Float32Array;
  first.dispose();
  const clock = new GpuClock();
  clock.mark(0);
  for (let i = 0; i < 3; i++) scope(f).dispose();
  clock.mark(1);
  return { ms: (await clock.elapsedMs()) / 3, out };
}

function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / (m || 1);
}

interface Row {
  layer: string;
  gflop: number;
  fwd_f2: number;
  fwd_f4: number;
  dgrad_f2?: number;
  dgrad_f4?: number;
  fwd_fused?: number;
  dgrad_fused?: number;
  wgrad_f4?: number;
  wgrad_fused?: number;
  /** F(6×6) around the GEMM (the profile's winograd6), where its tiles fit the output. */
  fwd_f6?: number;
  dgrad_f6?: number;
  wgrad_f6?: number;
  err: number;
  err6?: number;
}
const rows: Row[] = [];
for (const [ci, co, groups, pad, batch, h, w] of layers()) {
  const xs = [batch, ci, h, w], ws = [co, ci / groups, 3, 3];
  const g: ConvGeometry = convGeometry(xs, ws, { padding: pad, groups });
  const x = tensor(fill(ci * h * w * batch, 1), xs).keep();
  const wt = tensor(fill(co * (ci / groups) * 9, 2).map((v) => v * 0.1), ws).keep();
  const dy = tensor(fill(batch * co * g.ho * g.wo, 3), [batch, co, g.ho, g.wo]).keep();
  const images = winograd4Images(g);
  const out = (s: number[]) => empty(s);
  const fwd2 = await time(() => {
    const y = out([batch, co, g.ho, g.wo]);
    runWinograd(forwardWinogradSpec(g, NO_EPILOGUE), x, wt, false, [], [y]);
    return y;
  });
  const fwd4 = await time(() => {
    const y = out([batch, co, g.ho, g.wo]);
    runWinograd4(g, x, wt, false, NO_EPILOGUE, [], [y], images);
    return y;
  });
  const row: Row = {
    layer: `${ci}->${co}${groups > 1 ? ` g${groups}` : ""} p${pad} @${batch}x${h}x${w}`,
    gflop: (2 * co * (ci / groups) * 9 * g.ho * g.wo * batch) / 1e9,
    fwd_f2: fwd2.ms,
    fwd_f4: fwd4.ms,
    err: relErr(fwd4.out, fwd2.out),
  };
  // F(6×6) where the planner would take it with the switch on.
  const six = winograd6Pays(g.ho, g.wo, { ...H100_PROFILE, winograd6: true });
  if (six) {
    const f6 = await time(() => {
      const y = out([batch, co, g.ho, g.wo]);
      runWinograd4(g, x, wt, false, NO_EPILOGUE, [], [y], winograd4Images(g, 6), undefined, [], 6);
      return y;
    });
    row.fwd_f6 = f6.ms;
    row.err6 = relErr(f6.out, fwd2.out);
  }
  if (groups === 1) {
    const f = await time(() => {
      const y = out([batch, co, g.ho, g.wo]);
      runWinograd4Fused(g, x, wt, false, NO_EPILOGUE, [], [y]);
      return y;
    });
    row.fwd_fused = f.ms;
    row.err = Math.max(row.err, relErr(f.out, fwd2.out));
  }
  if (winogradFitsDgrad(g)) {
    const d2 = await time(() => {
      const dx = out(xs);
      runWinograd(dgradWinogradSpec(g, NO_EPILOGUE), dy, wt, true, [], [dx]);
      return dx;
    });
    const d4 = await time(() => {
      const dx = out(xs);
      runWinograd4(g, dy, wt, true, NO_EPILOGUE, [], [dx], images);
      return dx;
    });
    Object.assign(row, { dgrad_f2: d2.ms, dgrad_f4: d4.ms });
    row.err = Math.max(row.err, relErr(d4.out, d2.out));
    if (winograd6Pays(g.h, g.w, { ...H100_PROFILE, winograd6: true })) {
      const d6 = await time(() => {
        const dx = out(xs);
        runWinograd4(
          g,
          dy,
          wt,
          true,
          NO_EPILOGUE,
          [],
          [dx],
          winograd4Images(g, 6),
          undefined,
          [],
          6,
        );
        return dx;
      });
      row.dgrad_f6 = d6.ms;
      row.err6 = Math.max(row.err6 ?? 0, relErr(d6.out, d2.out));
    }
    if (groups === 1) {
      const df = await time(() => {
        const dx = out(xs);
        runWinograd4Fused(g, dy, wt, true, NO_EPILOGUE, [], [dx]);
        return dx;
      });
      row.dgrad_fused = df.ms;
      row.err = Math.max(row.err, relErr(df.out, d2.out));
    }
  }
  if (groups === 1) {
    const { splits, chunk } = fusedWgradSplits(g);
    const wf = await time(() => winograd4FusedWeightGradRaw(g, x, dy, splits, chunk));
    row.wgrad_fused = wf.ms;
    if (winogradWgradFits(g)) {
      const w4 = await time(() => winogradWeightGradRaw(g, x, dy));
      row.wgrad_f4 = w4.ms;
      row.err = Math.max(row.err, relErr(wf.out, w4.out));
    }
  }
  if (six && winogradWgradFits(g)) {
    const w6 = await time(() => winogradWeightGradRaw(g, x, dy, undefined, 6));
    row.wgrad_f6 = w6.ms;
  }
  for (const t of [x, wt, dy]) {
    t.kept = false;
    t.dispose();
  }
  rows.push(row);
  const r = (v?: number) => (v === undefined ? undefined : Number(v.toFixed(3)));
  console.log(JSON.stringify({
    ...row,
    gflop: r(row.gflop),
    fwd_f2: r(row.fwd_f2),
    fwd_f4: r(row.fwd_f4),
    dgrad_f2: r(row.dgrad_f2),
    dgrad_f4: r(row.dgrad_f4),
    fwd_fused: r(row.fwd_fused),
    dgrad_fused: r(row.dgrad_fused),
    wgrad_f4: r(row.wgrad_f4),
    wgrad_fused: r(row.wgrad_fused),
    fwd_f6: r(row.fwd_f6),
    dgrad_f6: r(row.dgrad_f6),
    wgrad_f6: r(row.wgrad_f6),
    err: row.err.toExponential(1),
    err6: row.err6?.toExponential(1),
  }));
}
const sum = (k: keyof Row) => rows.reduce((a, r) => a + ((r[k] as number) ?? 0), 0);
const fastest = (...v: (number | undefined)[]) =>
  Math.min(...v.filter((x): x is number => x !== undefined));
const best = rows.reduce(
  (a, r) =>
    a + fastest(r.fwd_f2, r.fwd_f4, r.fwd_fused) +
    (r.dgrad_f2 === undefined ? 0 : fastest(r.dgrad_f2, r.dgrad_f4, r.dgrad_fused)),
  0,
);
console.log(
  `# ${rows.length} layers, one call each: F(2×2) ${
    (sum("fwd_f2") + sum("dgrad_f2")).toFixed(1)
  } ms, F(4×4) ${(sum("fwd_f4") + sum("dgrad_f4")).toFixed(1)} ms, F(4×4) fused ${
    (sum("fwd_fused") + sum("dgrad_fused")).toFixed(1)
  } ms (one-group layers), the fastest per layer ${best.toFixed(1)} ms; weight gradients F(4×4) ${
    sum("wgrad_f4").toFixed(1)
  } ms, fused ${
    rows.reduce((a, r) => a + (r.wgrad_f4 === undefined ? 0 : r.wgrad_fused ?? 0), 0).toFixed(1)
  } ms (the same layers); where F(6×6) fits: forward + input gradient ${
    rows.reduce((a, r) => a + (r.fwd_f6 ?? 0) + (r.dgrad_f6 ?? 0), 0).toFixed(1)
  } ms against F(4×4)'s ${
    rows.reduce(
      (a, r) =>
        a + (r.fwd_f6 === undefined ? 0 : r.fwd_f4) +
        (r.dgrad_f6 === undefined ? 0 : r.dgrad_f4 ?? 0),
      0,
    ).toFixed(1)
  }, weight gradients ${sum("wgrad_f6").toFixed(1)} against ${
    rows.reduce((a, r) => a + (r.wgrad_f6 === undefined ? 0 : r.wgrad_f4 ?? 0), 0).toFixed(1)
  } ms`,
);
