// Inference over whole images of any size: an image that fits in one tile runs whole; a larger
// one runs as a sliding window of tile×tile crops (batched), and the change probabilities of
// overlapping tiles are averaged. Shared by `deno task predict` and the evaluator so that the
// masks predict writes and the counts eval reports come from the very same probabilities.
// Every forward pads its input on the bottom and right to the model's size divisor (zeros after
// normalisation, as mmseg's size_divisor with pad_val 0) and crops the output back, so sizes
// like 100×70 run; tiles and batches are planned within the adapter's buffer limits
// (train/window_plan.ts).

import { type Normalize, toChw } from "../data/sample.ts";
import type { RgbImage } from "../data/png.ts";
import { noGrad } from "../engine/autograd.ts";
import { sigmoid } from "../engine/ops/elementwise.ts";
import { slice } from "../engine/ops/layout.ts";
import { softmax } from "../engine/ops/softmax.ts";
import { scope } from "../engine/scope.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";
import type { ChangeDetector } from "../models/model.ts";
import {
  type BufferLimits,
  deviceLimits,
  measureBytesPerPixel,
  padSide,
  planWindow,
  type WindowPlan,
} from "./window_plan.ts";

export const DEFAULT_TILE = 512;
export const DEFAULT_OVERLAP = 64;
export const DEFAULT_BATCH = 4;

export interface WindowOptions {
  /** Tile side in pixels (default 512). A side no longer than this is not split. */
  tile?: number;
  /** Pixels that neighbouring tiles share (default 64); must be below the tile. */
  overlap?: number;
  /** Tiles (or whole images) per forward pass (default 4). */
  batch?: number;
  /** The model's registry `sizeDivisor`: inputs pad to multiples of it (default 1: none). */
  sizeDivisor?: number;
  /** Buffer limits to plan within (default: the device's; tests pass small ones). */
  limits?: BufferLimits;
  /** Told when the plan differs from the options (smaller batch or tile), once per reason. */
  onNote?: (note: string) => void;
}

/** A pair ready for the model: A and B as [3, H, W] float32, normalised. */
export interface PairImages {
  width: number;
  height: number;
  a: Float32Array;
  b: Float32Array;
}

/** One tile: its top-left corner and size in image pixels. */
export interface Window {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface CheckedWindow {
  tile: number;
  overlap: number;
  batch: number;
  sizeDivisor: number;
}

export function checkWindowOptions(opts: WindowOptions): CheckedWindow {
  const { tile = DEFAULT_TILE, overlap = DEFAULT_OVERLAP, batch = DEFAULT_BATCH } = opts;
  const sizeDivisor = opts.sizeDivisor ?? 1;
  if (!Number.isInteger(sizeDivisor) || sizeDivisor < 1) {
    throw new Error(`sizeDivisor ${sizeDivisor}: expected a whole number ≥ 1`);
  }
  if (!Number.isInteger(tile) || tile < 1) throw new Error(`tile ${tile}: expected a size ≥ 1`);
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= tile) {
    throw new Error(`overlap ${overlap}: expected a whole number from 0 to tile − 1 (${tile - 1})`);
  }
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch ${batch}: expected ≥ 1`);
  return { tile, overlap, batch, sizeDivisor };
}

/** The tile, overlap and batch for a width×height image of `model` on this adapter. */
export function planFor(
  model: ChangeDetector,
  width: number,
  height: number,
  opts: WindowOptions,
): WindowPlan {
  const w = checkWindowOptions(opts);
  const limits = opts.limits ?? deviceLimits();
  // One tile as asked (or the whole image), measured at its own size: when it fits, a batch of
  // them is planned from it (b tiles need at most b times one tile's largest buffer). Only a
  // tile that must shrink is planned from the small probe, which errs on the safe side.
  const tileH = Math.min(height, w.tile), tileW = Math.min(width, w.tile);
  let plan = planWindow({
    width,
    height,
    ...w,
    bytesPerPixel: measureBytesPerPixel(model, w.sizeDivisor, tileH, tileW),
    limits,
  });
  if (plan.tile < w.tile) {
    plan = planWindow({
      width,
      height,
      ...w,
      bytesPerPixel: measureBytesPerPixel(model, w.sizeDivisor),
      limits,
    });
  }
  if (plan.note) opts.onNote?.(plan.note);
  return plan;
}

/** Tile starts along one axis: [0] when the side fits in a tile; else steps of tile − overlap
 * with the last tile moved back to end flush with the image (so every tile is full-size). */
export function tileStarts(length: number, tile: number, overlap: number): number[] {
  if (length <= tile) return [0];
  const stride = tile - overlap;
  const starts: number[] = [];
  for (let s = 0; s + tile < length; s += stride) starts.push(s);
  starts.push(length - tile);
  return starts;
}

/** The tiles covering a width×height image, row by row; all have the same size. */
export function tileWindows(
  width: number,
  height: number,
  tile: number,
  overlap: number,
): Window[] {
  const w = Math.min(width, tile), h = Math.min(height, tile);
  const windows: Window[] = [];
  for (const y of tileStarts(height, tile, overlap)) {
    for (const x of tileStarts(width, tile, overlap)) windows.push({ x, y, width: w, height: h });
  }
  return windows;
}

/** HWC uint8 → CHW float32, (v / 255 − mean) / std: data/sample.ts's own conversion, so
 * the evaluator (which decodes through data/sample.ts) sees identical inputs. */
export function normalizeImage(img: RgbImage, normalize?: Normalize): Float32Array {
  return toChw(img, 0, 0, img.width, img.height, normalize);
}

/** Copy window `win` of a [channels, H, W] array into `dst` at element offset `at`. */
function copyWindow(
  src: Float32Array,
  width: number,
  height: number,
  win: Window,
  dst: Float32Array,
  at: number,
): void {
  const channels = src.length / (width * height);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < win.height; y++) {
      const from = (c * height + win.y + y) * width + win.x;
      dst.set(src.subarray(from, from + win.width), at + (c * win.height + y) * win.width);
    }
  }
}

/** Change logits → change probability [B, 1, H, W]: sigmoid of the 1-channel form, softmax
 * channel 1 of the 2-channel form. */
export function changeProbability(logits: Tensor): Tensor {
  const c = logits.shape[1];
  if (logits.ndim !== 4 || (c !== 1 && c !== 2)) {
    throw new Error(`change logits ${logits.describe()}: expected [B, 1 or 2, H, W]`);
  }
  return c === 1 ? sigmoid(logits) : slice(softmax(logits, 1), 1, 1, 2);
}

/** [n, c, H, W] → [n, c, H', W'] with zeros on the bottom and right (the same array when
 * nothing pads). */
export function padPlanes(
  x: Float32Array,
  planes: number,
  height: number,
  width: number,
  paddedHeight: number,
  paddedWidth: number,
): Float32Array {
  if (paddedHeight === height && paddedWidth === width) return x;
  const out = new Float32Array(planes * paddedHeight * paddedWidth);
  for (let p = 0; p < planes; p++) {
    for (let y = 0; y < height; y++) {
      const from = (p * height + y) * width;
      out.set(x.subarray(from, from + width), (p * paddedHeight + y) * paddedWidth);
    }
  }
  return out;
}

/** Probabilities of `n` stacked same-size pairs ([n, 3, H, W] each) as a GPU tensor
 * [n, 1, H, W]; the caller disposes it. Inputs pad to multiples of `sizeDivisor` and the
 * output is cropped back. */
export function forwardProbability(
  model: ChangeDetector,
  a: Float32Array,
  b: Float32Array,
  n: number,
  height: number,
  width: number,
  sizeDivisor = 1,
): Tensor {
  const ph = padSide(height, sizeDivisor), pw = padSide(width, sizeDivisor);
  const shape = [n, 3, ph, pw];
  const pa = padPlanes(a, 3 * n, height, width, ph, pw);
  const pb = padPlanes(b, 3 * n, height, width, ph, pw);
  return scope(() =>
    noGrad(() => {
      const p = changeProbability(model.forward(tensor(pa, shape), tensor(pb, shape)));
      if (ph === height && pw === width) return p;
      return slice(slice(p, 2, 0, height), 3, 0, width);
    })
  );
}

/** Run `fn` with the model in eval mode (BatchNorm statistics, no dropout), then restore. */
export async function inEvalMode<T>(model: ChangeDetector, fn: () => Promise<T>): Promise<T> {
  const was = model.training;
  model.eval();
  try {
    return await fn();
  } finally {
    model.train(was);
  }
}

/** Change probability of every pixel, [H, W] row-major: whole when the image fits in a tile,
 * else by sliding window with overlapping tiles averaged. Runs the model in eval mode. */
export async function predictProbability(
  model: ChangeDetector,
  pair: PairImages,
  opts: WindowOptions = {},
): Promise<Float32Array> {
  const { sizeDivisor } = checkWindowOptions(opts);
  const { width, height } = pair;
  return await inEvalMode(model, async () => {
    const { tile, overlap, batch } = planFor(model, width, height, opts);
    const windows = tileWindows(width, height, tile, overlap);
    if (windows.length === 1) {
      const p = forwardProbability(model, pair.a, pair.b, 1, height, width, sizeDivisor);
      try {
        return (await p.read()) as Float32Array;
      } finally {
        p.dispose();
      }
    }
    const sum = new Float32Array(width * height);
    const hits = new Uint32Array(width * height);
    const { width: tw, height: th } = windows[0];
    const tilePlane = tw * th;
    for (let first = 0; first < windows.length; first += batch) {
      const group = windows.slice(first, first + batch);
      const a = new Float32Array(group.length * 3 * tilePlane);
      const b = new Float32Array(group.length * 3 * tilePlane);
      group.forEach((win, k) => {
        copyWindow(pair.a, width, height, win, a, k * 3 * tilePlane);
        copyWindow(pair.b, width, height, win, b, k * 3 * tilePlane);
      });
      const p = forwardProbability(model, a, b, group.length, th, tw, sizeDivisor);
      let probs: Float32Array;
      try {
        probs = (await p.read()) as Float32Array;
      } finally {
        p.dispose();
      }
      group.forEach((win, k) => {
        for (let y = 0; y < th; y++) {
          const row = (win.y + y) * width + win.x, src = k * tilePlane + y * tw;
          for (let x = 0; x < tw; x++) {
            sum[row + x] += probs[src + x];
            hits[row + x]++;
          }
        }
      });
    }
    for (let i = 0; i < sum.length; i++) sum[i] /= hits[i];
    return sum;
  });
}

/** Changed (1) where the probability is above the threshold, else 0. */
export function maskOf(prob: Float32Array, threshold = 0.5): Uint8Array {
  const mask = new Uint8Array(prob.length);
  for (let i = 0; i < prob.length; i++) mask[i] = prob[i] > threshold ? 1 : 0;
  return mask;
}
