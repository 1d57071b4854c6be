// How much of an image one forward pass may take on this adapter. WebGPU refuses to bind a
// buffer larger than maxStorageBufferBindingSize (128 MiB on Mesa's software driver, 2–4 GiB
// on NVIDIA) or create one above maxBufferSize, so the default tile 512 × batch 4 that fits a
// GPU stopped with "Buffer binding … exceeds max_storage_buffer_binding_size" elsewhere. The
// planner keeps the largest buffer of a forward pass within those limits: first fewer tiles per
// batch, then (when one tile alone is too large) a smaller tile. Sizes pad to the model's size
// divisor, as the forward itself does (train/predict.ts).

import { deviceInfo } from "../engine/device.ts";
import { noGrad } from "../engine/autograd.ts";
import { pool, sizeClass } from "../engine/pool.ts";
import { countMacs } from "../engine/profiler.ts";
import { scope } from "../engine/scope.ts";
import { zeros } from "../engine/tensor.ts";
import type { ChangeDetector } from "../models/model.ts";

/** The adapter limits a forward pass must respect, in bytes. */
export interface BufferLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** `n` rounded up to a multiple of `divisor`. */
export function padSide(n: number, divisor: number): number {
  return Math.ceil(n / divisor) * divisor;
}

/** Input pixels (images × padded height × padded width) one forward may take: its largest
 * buffer, `bytesPerPixel` per input pixel, must bind and be creatable after pool rounding. */
export function pixelBudget(bytesPerPixel: number, limits: BufferLimits): number {
  let pixels = Math.floor(limits.maxStorageBufferBindingSize / bytesPerPixel);
  // The pool rounds a request up to its size class (at most 12.5 % more).
  while (pixels > 0 && sizeClass(pixels * bytesPerPixel) > limits.maxBufferSize) {
    pixels = Math.floor(pixels * 0.97);
  }
  return pixels;
}

export interface PlanInput {
  width: number;
  height: number;
  tile: number;
  overlap: number;
  batch: number;
  sizeDivisor: number;
  /** Bytes of the forward's largest buffer per input pixel (measureBytesPerPixel). */
  bytesPerPixel: number;
  limits: BufferLimits;
}

export interface WindowPlan {
  tile: number;
  overlap: number;
  batch: number;
  /** Why the plan differs from what was asked (for the commands to print), or undefined. */
  note?: string;
}

const MIB = 1024 * 1024;

/**
 * The tile, overlap and batch to run a width×height image with: the requested ones when they
 * fit the limits; else the largest batch that fits, and when a single tile is too large, the
 * largest square tile (a multiple of the size divisor) that fits, with the overlap kept below it.
 */
export function planWindow(p: PlanInput): WindowPlan {
  const budget = pixelBudget(p.bytesPerPixel, p.limits);
  const area = (t: number) =>
    padSide(Math.min(p.width, t), p.sizeDivisor) * padSide(Math.min(p.height, t), p.sizeDivisor);
  const limit = `the adapter's ${
    (p.limits.maxStorageBufferBindingSize / MIB).toFixed(0)
  } MiB buffer-binding limit`;
  let { tile, overlap } = p;
  let note: string | undefined;
  if (area(tile) > budget) {
    tile = Math.floor(Math.sqrt(budget) / p.sizeDivisor) * p.sizeDivisor;
    if (tile < p.sizeDivisor) {
      throw new Error(
        `even a ${p.sizeDivisor}×${p.sizeDivisor} tile needs buffers beyond ${limit}; ` +
          `this model cannot run on this adapter`,
      );
    }
    if (overlap >= tile) overlap = Math.floor(tile / 8);
    note = `tile ${p.tile} → ${tile} (overlap ${overlap}) to stay within ${limit}`;
  }
  const batch = Math.max(1, Math.min(p.batch, Math.floor(budget / area(tile))));
  if (batch < p.batch && area(tile) * p.batch > budget) {
    const b = `batch ${p.batch} → ${batch}`;
    note = note ? `${note}; ${b}` : `${b} to stay within ${limit}`;
  }
  return { tile, overlap, batch, note };
}

const measured = new WeakMap<ChangeDetector, Map<string, number>>();

/** The adapter's limits, from the initialised device. */
export function deviceLimits(): BufferLimits {
  const i = deviceInfo();
  return {
    maxStorageBufferBindingSize: i.maxStorageBufferBindingSize,
    maxBufferSize: i.maxBufferSize,
  };
}

/**
 * Bytes of the largest buffer a forward of `model` requests per input pixel, from a dry run
 * (shapes only, no kernel) of one image, by default 128×128 (padded to the divisor). Activations
 * scale with the pixel count; buffers that do not (weights, split-K partials of a small launch)
 * make a small probe's figure larger, so the default errs on the safe side: at 128² it was at or
 * above the figure at 512², 4×512² and 1024×704 for every registry model (TinyCD 256 bytes,
 * FC-EF 128, SNUNet 448, ChangeFormer 320 against 256 there). For models whose constant buffers
 * are large (IFN: 48 MiB at every side up to 256) it overstates a larger tile several times
 * over, so planFor first measures the tile it is asked for at its own size. Cached per model
 * and size.
 */
export function measureBytesPerPixel(
  model: ChangeDetector,
  sizeDivisor: number,
  height = 128,
  width = height,
): number {
  const h = padSide(height, sizeDivisor), w = padSide(width, sizeDivisor);
  let sizes = measured.get(model);
  if (!sizes) measured.set(model, sizes = new Map());
  const known = sizes.get(`${h}x${w}`);
  if (known !== undefined) return known;
  const was = model.training, before = pool.largestRequest;
  pool.largestRequest = 0;
  model.eval();
  try {
    countMacs(() => {
      scope(() => {
        noGrad(() => model.forward(zeros([1, 3, h, w]), zeros([1, 3, h, w])));
      });
    }, { dry: true });
  } finally {
    model.train(was);
  }
  const bpp = pool.largestRequest / (h * w);
  pool.largestRequest = Math.max(before, pool.largestRequest);
  sizes.set(`${h}x${w}`, bpp);
  return bpp;
}
