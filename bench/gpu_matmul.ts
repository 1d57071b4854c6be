// f32 matmul throughput on the GPU machine: `deno run -A bench/gpu_matmul.ts`.
// Prints TFLOP/s (2·M·N·K per product) for square products, timing REPS dispatches recorded into
// one pass followed by one sync (after a warm-up that compiles the pipeline), best of SAMPLES.
// Every timed variant is first checked on sampled entries against float64 dot products.
//
// Environment:
//   MATMUL_SIZES     comma list of sizes (default 1024,2048,4096,8192)
//   MATMUL_VARIANTS  comma list of variant names below, "auto" = the op's own plan (default),
//                    "sweep" = every variant at MATMUL_SWEEP sizes, then the fastest at every size
//   MATMUL_SWEEP     sizes for the sweep (default 4096,8192)
//   MATMUL_TRANS     also time these layouts at the largest sweep size, e.g. "NT,TN" (default none)

import { deviceInfo, initDevice } from "../engine/device.ts";
import { run } from "../engine/launch.ts";
import { gemm } from "../engine/ops/matmul.ts";
import { pool } from "../engine/pool.ts";
import { sync } from "../engine/recorder.ts";
import { empty, type Tensor, tensor } from "../engine/tensor.ts";
import { matmulKernel, planMatmul, TILE_LARGE, type TileConfig } from "../kernels/matmul.ts";

await initDevice();

const L = TILE_LARGE;
/** Variants to compare (each a full tile config). */
const VARIANTS: Record<string, TileConfig> = {
  large: L,
  bk8: { ...L, bk: 8 },
  bk8_single: { ...L, bk: 8, doubleBuffer: false },
  single: { ...L, doubleBuffer: false },
  bk32_single: { ...L, bk: 32, doubleBuffer: false },
  rows_first: { ...L, kFirst: false },
  no_swizzle: { ...L, swizzle: 0 },
  swizzle4: { ...L, swizzle: 4 },
  swizzle16: { ...L, swizzle: 16 },
  fixed: { ...L, fixedArrays: true },
  flat_shared: { ...L, flatShared: true },
  flat_bk8: { ...L, bk: 8, flatShared: true },
  t128x256: { ...L, bn: 256, tn: 16, bk: 8 },
  t128x256_bk16: { ...L, bn: 256, tn: 16 },
  t256x128: { ...L, bm: 256, tm: 16, bk: 8 },
  t64x128: { ...L, bm: 64, tm: 4 },
  t64x64: { ...L, bm: 64, bn: 64, tm: 4, tn: 4 },
};

const list = (name: string, dflt: string) =>
  (Deno.env.get(name) ?? dflt).split(",").map((s) => s.trim()).filter(Boolean);
const SIZES = list("MATMUL_SIZES", "1024,2048,4096,8192").map(Number);
const SWEEP = list("MATMUL_SWEEP", "4096,8192").map(Number);
const TRANS = list("MATMUL_TRANS", "");
const SAMPLES = 3;
const TARGET_S = 0.3; // GPU time per sample

function randomData(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}

interface Problem {
  size: number;
  transA: boolean;
  transB: boolean;
  aData: Float32Array;
  bData: Float32Array;
  a: Tensor;
  b: Tensor;
  c: Tensor;
}

function problem(size: number, transA = false, transB = false): Problem {
  const aData = randomData(size * size, 1), bData = randomData(size * size, 2);
  return {
    size,
    transA,
    transB,
    aData,
    bData,
    a: tensor(aData, [size, size]),
    b: tensor(bData, [size, size]),
    c: empty([size, size]),
  };
}

function free(p: Problem): void {
  p.a.dispose();
  p.b.dispose();
  p.c.dispose();
  pool.trim();
}

/** Max relative error over sampled entries of C against float64 dot products. */
async function sampledError(p: Problem, out: Tensor): Promise<number> {
  const c = await out.read();
  const n = p.size;
  let worst = 0;
  for (let s = 0; s < 24; s++) {
    const i = (s * 7919) % n, j = (s * 104729 + 13) % n;
    let ref = 0, mag = 0;
    for (let k = 0; k < n; k++) {
      const av = p.transA ? p.aData[k * n + i] : p.aData[i * n + k];
      const bv = p.transB ? p.bData[j * n + k] : p.bData[k * n + j];
      ref += av * bv;
      mag += Math.abs(av * bv);
    }
    worst = Math.max(worst, Math.abs(c[i * n + j] - ref) / mag);
  }
  return worst;
}

/** Seconds per product of `launch`, best of SAMPLES batches. */
async function time(launch: () => void): Promise<number> {
  let t = performance.now();
  launch();
  await sync();
  const once = (performance.now() - t) / 1000; // includes the pipeline compile
  t = performance.now();
  launch();
  await sync();
  const warm = Math.max((performance.now() - t) / 1000, 1e-5, once / 1000);
  const reps = Math.max(3, Math.min(500, Math.round(TARGET_S / warm)));
  let best = Infinity;
  for (let s = 0; s < SAMPLES; s++) {
    t = performance.now();
    for (let r = 0; r < reps; r++) launch();
    await sync();
    best = Math.min(best, (performance.now() - t) / 1000 / reps);
  }
  return best;
}

interface Result {
  variant: string;
  layout: string;
  size: number;
  tflops: number;
  ms: number;
  relErr: number;
}
const results: Result[] = [];

async function measure(variant: string, p: Problem): Promise<Result> {
  const spec = {
    m: p.size,
    n: p.size,
    k: p.size,
    transA: p.transA,
    transB: p.transB,
    batch: [],
    aSize: p.a.size,
    bSize: p.b.size,
  };
  let launch: () => void, relErr: number;
  if (variant === "auto") {
    // The op's own path (plan, split, epilogue), writing a fresh pooled output each time.
    const opts = { transA: p.transA, transB: p.transB };
    launch = () => gemm(p.a, p.b, opts).dispose();
    const out = gemm(p.a, p.b, opts);
    relErr = await sampledError(p, out);
    out.dispose();
  } else {
    const k = matmulKernel({ ...spec, tile: VARIANTS[variant] });
    launch = () => run(k, [p.a, p.b], [p.c]);
    launch();
    relErr = await sampledError(p, p.c);
  }
  const s = await time(launch);
  const r = {
    variant,
    layout: `${p.transA ? "T" : "N"}${p.transB ? "T" : "N"}`,
    size: p.size,
    tflops: (2 * p.size ** 3) / s / 1e12,
    ms: s * 1000,
    relErr,
  };
  const bad = relErr > 1e-4 ? "  WRONG RESULT" : "";
  console.log(
    `${r.variant.padEnd(14)} ${r.layout} ${String(r.size).padStart(5)}  ${
      r.tflops.toFixed(2).padStart(6)
    } TFLOP/s  ${r.ms.toFixed(3).padStart(9)} ms  err ${relErr.toExponential(1)}${bad}`,
  );
  results.push(r);
  return r;
}

async function tryMeasure(variant: string, p: Problem): Promise<Result | null> {
  try {
    return await measure(variant, p);
  } catch (e) {
    console.log(`${variant.padEnd(14)} ${p.size}: failed: ${(e as Error).message.slice(0, 300)}`);
    return null;
  }
}

console.log(`adapter: ${deviceInfo().description}`);
for (const size of SIZES) {
  const { tile, split } = planMatmul(size, size, size);
  console.log(
    `plan ${size}: ${tile.bm}x${tile.bn}x${tile.bk}/${tile.tm}x${tile.tn} split ${split}`,
  );
}
let variants = list("MATMUL_VARIANTS", "auto");
if (variants.includes("sweep")) {
  const score = new Map<string, number>();
  for (const size of SWEEP) {
    const p = problem(size);
    for (const v of Object.keys(VARIANTS)) {
      const r = await tryMeasure(v, p);
      const ok = r && r.relErr <= 1e-4;
      score.set(v, (score.get(v) ?? 0) + (ok ? Math.log(r.tflops) : -Infinity));
    }
    free(p);
  }
  const best = [...score].sort((x, y) => y[1] - x[1])[0][0];
  console.log(`fastest in sweep: ${best}`);
  variants = ["auto", best];
  for (const layout of TRANS) {
    const p = problem(Math.max(...SWEEP), layout[0] === "T", layout[1] === "T");
    for (const v of variants) await tryMeasure(v, p);
    free(p);
  }
}
for (const size of SIZES) {
  const p = problem(size);
  for (const v of variants) await tryMeasure(v, p);
  free(p);
}
console.log(`json: ${JSON.stringify(results)}`);
