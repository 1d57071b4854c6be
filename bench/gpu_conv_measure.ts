// bench/gpu_conv.ts's data and checks: inputs filled on the GPU from an integer hash of the element
// index (so sampled outputs are checked at full size against float64 sums on the CPU without
// uploading anything), float64 samplers of the three computations, and GPU-timestamp timing
// (n launches per sample, chosen so a sample lasts ~TARGET_MS; the median of SAMPLES).

import { hasFeature } from "../engine/device.ts";
import { GpuClock } from "../engine/gpu_clock.ts";
import { run } from "../engine/launch.ts";
import { gemm } from "../engine/ops/matmul.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { empty, type Tensor } from "../engine/tensor.ts";
import { type Kernel, kernel1d, rw } from "../kernels/common.ts";
import type { ConvGeometry } from "../kernels/conv2d.ts";
import { SMALL } from "./gpu_conv_layers.ts";

const TARGET_MS = SMALL ? 5 : 25;
const SAMPLES = SMALL ? 2 : 5;

// ---------------------------------------------------------------- data

const SEED_MUL = 0x9e3779b9;

/** The value at index i of the tensor seeded `seed` (PCG hash), exact in f32: [-1, 1)·scale. */
function hashValue(i: number, seed: number, scale: number): number {
  let x = (i + Math.imul(seed, SEED_MUL)) >>> 0;
  x = (Math.imul(x, 747796405) + 2891336453) >>> 0;
  x = Math.imul(((x >>> ((x >>> 28) + 4)) ^ x) >>> 0, 277803737) >>> 0;
  x = ((x >>> 22) ^ x) >>> 0;
  return ((x >>> 8) * 2 / 16777216 - 1) * scale;
}

function hashFillKernel(n: number, seed: number, scale: number): Kernel {
  return kernel1d(
    "hash_fill",
    [rw("out")],
    n,
    `var x = i + ${(Math.imul(seed, SEED_MUL) >>> 0)}u;
  x = x * 747796405u + 2891336453u;
  x = ((x >> ((x >> 28u) + 4u)) ^ x) * 277803737u;
  x = (x >> 22u) ^ x;
  out[i] = (f32(x >> 8u) * ${2 / 16777216} - 1.0) * ${scale};`,
  );
}

export interface Data {
  t: Tensor;
  seed: number;
  scale: number;
}

export function filled(shape: number[], seed: number, scale: number): Data {
  const t = empty(shape).keep();
  run(hashFillKernel(t.size, seed, scale), [], [t]);
  return { t, seed, scale };
}

const at = (d: Data, i: number) => hashValue(i, d.seed, d.scale);

// ---------------------------------------------------------------- float64 samples

/** Every multiply-add of output element `yi` of the conv: calls f(xIndex, wIndex). */
function convTerms(g: ConvGeometry, yi: number, f: (xi: number, wi: number) => void): void {
  const cig = g.ci / g.groups, cog = g.co / g.groups;
  const ox = yi % g.wo, oy = Math.floor(yi / g.wo) % g.ho;
  const co = Math.floor(yi / (g.wo * g.ho)) % g.co, b = Math.floor(yi / (g.wo * g.ho * g.co));
  const c0 = Math.floor(co / cog) * cig;
  for (let r = 0; r < cig; r++) {
    for (let ky = 0; ky < g.kh; ky++) {
      const iy = oy * g.strideY - g.padY + ky * g.dilY;
      if (iy < 0 || iy >= g.h) continue;
      for (let kx = 0; kx < g.kw; kx++) {
        const ix = ox * g.strideX - g.padX + kx * g.dilX;
        if (ix < 0 || ix >= g.w) continue;
        f(((b * g.ci + c0 + r) * g.h + iy) * g.w + ix, ((co * cig + r) * g.kh + ky) * g.kw + kx);
      }
    }
  }
}

/** Relative error |got − ref| / Σ|terms| over a few sampled outputs. */
export type Sampler = (got: Float32Array) => number;

function samples(n: number, count: number): number[] {
  return Array.from({ length: count }, (_, s) => Math.floor(((s + 0.37) / count) * n) % n);
}

export function forwardSampler(g: ConvGeometry, x: Data, w: Data): Sampler {
  return (got) => {
    let worst = 0;
    for (const yi of samples(got.length, 16)) {
      let ref = 0, mag = 0;
      convTerms(g, yi, (xi, wi) => {
        const p = at(x, xi) * at(w, wi);
        ref += p;
        mag += Math.abs(p);
      });
      worst = Math.max(worst, Math.abs(got[yi] - ref) / (mag || 1));
    }
    return worst;
  };
}

export function dgradSampler(g: ConvGeometry, dy: Data, w: Data): Sampler {
  // dx[xi] = Σ over every output whose window covers xi: scan outputs in the neighbourhood.
  return (got) => {
    let worst = 0;
    const cig = g.ci / g.groups, cog = g.co / g.groups;
    for (const xi of samples(got.length, 12)) {
      const ix = xi % g.w, iy = Math.floor(xi / g.w) % g.h;
      const ci = Math.floor(xi / (g.w * g.h)) % g.ci, b = Math.floor(xi / (g.w * g.h * g.ci));
      const grp = Math.floor(ci / cig), r = ci % cig;
      let ref = 0, mag = 0;
      for (let o = 0; o < cog; o++) {
        const co = grp * cog + o;
        for (let ky = 0; ky < g.kh; ky++) {
          const ny = iy + g.padY - ky * g.dilY;
          if (ny < 0 || ny % g.strideY || ny / g.strideY >= g.ho) continue;
          for (let kx = 0; kx < g.kw; kx++) {
            const nx = ix + g.padX - kx * g.dilX;
            if (nx < 0 || nx % g.strideX || nx / g.strideX >= g.wo) continue;
            const yi = ((b * g.co + co) * g.ho + ny / g.strideY) * g.wo + nx / g.strideX;
            const p = at(dy, yi) * at(w, ((co * cig + r) * g.kh + ky) * g.kw + kx);
            ref += p;
            mag += Math.abs(p);
          }
        }
      }
      worst = Math.max(worst, Math.abs(got[xi] - ref) / (mag || 1));
    }
    return worst;
  };
}

export function wgradSampler(g: ConvGeometry, x: Data, dy: Data): Sampler {
  return (got) => {
    let worst = 0;
    const cig = g.ci / g.groups, cog = g.co / g.groups;
    for (const wi of samples(got.length, 2)) {
      const kx = wi % g.kw, ky = Math.floor(wi / g.kw) % g.kh;
      const r = Math.floor(wi / (g.kw * g.kh)) % cig, co = Math.floor(wi / (g.kw * g.kh * cig));
      const ci = Math.floor(co / cog) * cig + r;
      let ref = 0, mag = 0;
      for (let b = 0; b < g.batch; b++) {
        for (let oy = 0; oy < g.ho; oy++) {
          const iy = oy * g.strideY - g.padY + ky * g.dilY;
          if (iy < 0 || iy >= g.h) continue;
          const yRow = ((b * g.co + co) * g.ho + oy) * g.wo;
          const xRow = ((b * g.ci + ci) * g.h + iy) * g.w;
          for (let ox = 0; ox < g.wo; ox++) {
            const ix = ox * g.strideX - g.padX + kx * g.dilX;
            if (ix < 0 || ix >= g.w) continue;
            const p = at(dy, yRow + ox) * at(x, xRow + ix);
            ref += p;
            mag += Math.abs(p);
          }
        }
      }
      worst = Math.max(worst, Math.abs(got[wi] - ref) / (mag || 1));
    }
    return worst;
  };
}

// ---------------------------------------------------------------- timing

let clockMade = false;
let clockValue: GpuClock | null = null;
/** GPU timestamps where the adapter has them (made on first use, after initDevice). */
function clockOf(): GpuClock | null {
  if (!clockMade) {
    clockValue = hasFeature("timestamp-query") ? new GpuClock() : null;
    clockMade = true;
  }
  return clockValue;
}

/** ms per launch of `step` (GPU timestamps, else wall clock). */
async function sampleMs(step: () => void, n: number): Promise<number> {
  const clock = clockOf();
  const t0 = performance.now();
  clock?.mark(0);
  for (let i = 0; i < n; i++) scope(step);
  clock?.mark(1);
  if (clock) return (await clock.elapsedMs()) / n;
  await sync();
  return (performance.now() - t0) / n;
}

async function timeMs(step: () => void): Promise<number> {
  await sampleMs(step, 1); // compile
  const probe = await sampleMs(step, 2);
  const n = Math.max(2, Math.min(300, Math.ceil(TARGET_MS / Math.max(probe, 1e-3))));
  // The CPU-side checks between cases leave the GPU idle long enough to drop its clock: ~4
  // samples' worth of launches first, so the timed ones run at the clock a busy GPU keeps.
  if (!SMALL) await sampleMs(step, 4 * n);
  const xs: number[] = [];
  for (let s = 0; s < SAMPLES; s++) xs.push(await sampleMs(step, n));
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

/** Keep the GPU busy with 2048² matmuls for `ms` of wall time. */
export async function warmUp(ms: number): Promise<void> {
  const a = empty([2048, 2048]).keep(), b = empty([2048, 2048]).keep();
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 20; i++) scope(() => void gemm(a, b));
    await sync();
  }
  a.dispose();
  b.dispose();
}

/** Run `launch` once, check its output with `check`, then time it. */
export async function measure(
  launch: () => Tensor,
  check: Sampler,
): Promise<{ ms: number; err: number }> {
  const out = scope(launch);
  const err = check((await out.read()) as Float32Array);
  out.dispose();
  return { ms: await timeMs(() => void launch()), err };
}
