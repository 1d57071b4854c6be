// Evaluate a change detector over labelled pairs: decode in workers, run the model (same-size
// images batched; images larger than a tile by sliding window), count TP/FP/TN/FN per image on
// the GPU, and turn the counts into the metrics report of train/metrics.ts. The trainer calls
// this for validation, `deno task eval` for test sets, and O-P routing reads `predictedCar`.
//
// A pixel is "changed" where its change probability (sigmoid, or softmax channel 1) is above the
// threshold — the same rule, on the same probabilities, as the masks `deno task predict` writes.
// For a 2-channel model the default 0.5 is the argmax.

import type { DecodeRequest, DecodeResult } from "../data/decode_worker.ts";
import type { PairFiles } from "../data/pair_files.ts";
import type { Normalize, SampleTensors } from "../data/sample.ts";
import { defaultWorkerCount, WorkerPool } from "../data/worker_pool.ts";
import { confusion } from "../engine/ops/confusion.ts";
import { fill } from "../engine/ops/elementwise.ts";
import { concat } from "../engine/ops/layout.ts";
import { scope } from "../engine/scope.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";
import type { ChangeDetector } from "../models/model.ts";
import { IMAGENET_NORM } from "../models/registry.ts";
import {
  type Confusion,
  countsFromArray,
  evaluate,
  type MetricsReport,
  validPixels,
} from "./metrics.ts";
import {
  checkWindowOptions,
  forwardProbability,
  inEvalMode,
  planFor,
  predictProbability,
  type WindowOptions,
} from "./predict.ts";

export interface EvaluateOptions extends WindowOptions {
  /** Change probability above which a pixel counts as changed (default 0.5). */
  threshold?: number;
  /** Input normalisation: the registry entry's `normalize` (default ImageNet, as all entries). */
  normalize?: Normalize;
  /** Decode workers (default: cores − 1, at most 8). */
  workers?: number;
  /** Called after each image is counted (or has failed, with keepGoing). */
  onProgress?: (done: number, total: number) => void;
  /** A pair that fails (unreadable, or the model fails on it) is listed in `failed` and the
   * rest still count, instead of the first failure ending the run (the eval command). */
  keepGoing?: boolean;
}

/** A pair left out of the metrics because it failed, with the reason. */
export interface FailedPair {
  name: string;
  file: string;
  message: string;
}

export interface ImageResult {
  name: string;
  /** Ground-truth change area ratio: changed label pixels / valid pixels. */
  car: number;
  /** Predicted change area ratio: predicted changed pixels / valid pixels (O-P routing). */
  predictedCar: number;
  counts: Confusion;
}

export interface Evaluation {
  report: MetricsReport;
  /** One entry per pair counted, in the order given. */
  perImage: ImageResult[];
  /** Pairs that failed (only with keepGoing; otherwise the first failure throws). */
  failed: FailedPair[];
}

/** Per-image counts of probabilities [n, 1, H, W] against 0/1 labels [n·H·W], on the GPU. */
function countOnGpu(prob: Tensor, labels: Uint32Array, threshold: number): Tensor {
  const [n, , h, w] = prob.shape;
  // The confusion op's 2-channel argmax of (threshold, p) says "changed" exactly where
  // p > threshold (ties go to class 0), which is predict's rule for its masks.
  return scope(() =>
    confusion(concat([fill(prob.shape, threshold), prob], 1), tensor(labels, [n, h, w], "u32"))
  );
}

async function readCounts(counts: Tensor): Promise<Confusion[]> {
  try {
    return countsFromArray(await counts.read());
  } finally {
    counts.dispose();
  }
}

function resultOf(name: string, c: Confusion): ImageResult {
  const valid = validPixels(c);
  return {
    name,
    car: valid > 0 ? (c.tp + c.fn) / valid : 0,
    predictedCar: valid > 0 ? (c.tp + c.fp) / valid : 0,
    counts: c,
  };
}

/** Counts of same-size samples run as one batch. */
async function countBatch(
  model: ChangeDetector,
  group: SampleTensors[],
  threshold: number,
  sizeDivisor: number,
): Promise<Confusion[]> {
  const { width, height } = group[0];
  const plane = width * height, n = group.length;
  const a = new Float32Array(n * 3 * plane), b = new Float32Array(n * 3 * plane);
  const labels = new Uint32Array(n * plane);
  group.forEach((s, k) => {
    a.set(s.a, k * 3 * plane);
    b.set(s.b, k * 3 * plane);
    labels.set(s.label, k * plane);
  });
  const prob = forwardProbability(model, a, b, n, height, width, sizeDivisor);
  try {
    return await readCounts(countOnGpu(prob, labels, threshold));
  } finally {
    prob.dispose();
  }
}

/** Counts of one image larger than a tile, from its sliding-window probabilities. */
async function countTiled(
  model: ChangeDetector,
  s: SampleTensors,
  window: WindowOptions,
  threshold: number,
): Promise<Confusion> {
  const p = await predictProbability(model, s, window);
  const prob = tensor(p, [1, 1, s.height, s.width]);
  try {
    return (await readCounts(countOnGpu(prob, s.label, threshold)))[0];
  } finally {
    prob.dispose();
  }
}

/**
 * Run `model` (eval mode; its training mode is restored afterwards) over `pairs` and report the
 * metrics. Pairs of the same size that fit in a tile run up to `batch` at a time (fewer where
 * the adapter's buffer limits say so); a larger pair runs by sliding window. Bad files fail
 * with an error naming the file, or with keepGoing are listed in `failed` while the rest count.
 */
export async function evaluateModel(
  model: ChangeDetector,
  pairs: PairFiles[],
  opts: EvaluateOptions = {},
): Promise<Evaluation> {
  const window = checkWindowOptions(opts);
  const { threshold = 0.5, normalize = IMAGENET_NORM, onProgress, keepGoing = false } = opts;
  if (!(threshold >= 0 && threshold <= 1)) throw new Error(`threshold ${threshold}: not in [0, 1]`);
  return await inEvalMode(model, async () => {
    const perImage: ImageResult[] = [];
    const failed: FailedPair[] = [];
    if (pairs.length === 0) return { report: evaluate([]), perImage, failed };
    const pool = new WorkerPool<DecodeRequest, DecodeResult>(
      new URL("../data/decode_worker.ts", import.meta.url),
      Math.min(pairs.length, opts.workers ?? defaultWorkerCount()),
    );
    // Decode a few batches ahead of the GPU; a sample is dropped from here once taken.
    const decoding = new Map<number, Promise<SampleTensors>>();
    let requested = 0;
    const take = (i: number): Promise<SampleTensors> => {
      for (; requested < Math.min(pairs.length, i + 2 * window.batch + 2); requested++) {
        const req: DecodeRequest = { task: "load", pair: pairs[requested], normalize };
        const p = pool.run(req) as Promise<SampleTensors>;
        p.catch(() => {}); // surfaced when taken
        decoding.set(requested, p);
      }
      const p = decoding.get(i)!;
      decoding.delete(i);
      return p;
    };
    const progress = () => onProgress?.(perImage.length + failed.length, pairs.length);
    const done = (list: Confusion[], names: string[]) => {
      list.forEach((c, k) => perImage.push(resultOf(names[k], c)));
      progress();
    };
    /** Run `fn` for the pairs at `indices`; a failure throws or, with keepGoing, is listed. */
    const attempt = async (indices: number[], fn: () => Promise<Confusion[]>) => {
      try {
        done(await withPairName(pairs[indices[0]], indices.length, fn), indices.map(nameAt));
      } catch (e) {
        if (!keepGoing) throw e;
        if (indices.length > 1) throw e; // callers retry a batch pair by pair
        const pair = pairs[indices[0]];
        failed.push({ name: pair.name, file: pair.a, message: (e as Error).message });
        progress();
      }
    };
    const nameAt = (i: number) => pairs[i].name;
    let group: SampleTensors[] = [];
    let groupStart = 0;
    let groupBatch = window.batch;
    const flush = async () => {
      if (group.length === 0) return;
      const g = group, first = groupStart;
      group = [];
      const indices = g.map((_, k) => first + k);
      try {
        await attempt(indices, () => countBatch(model, g, threshold, window.sizeDivisor));
      } catch (e) {
        if (!keepGoing) throw e;
        // Which pair of the batch failed is unknown: run them one at a time.
        for (const [k, s] of g.entries()) {
          await attempt(
            [first + k],
            () => countBatch(model, [s], threshold, window.sizeDivisor),
          );
        }
      }
    };
    try {
      for (let i = 0; i < pairs.length; i++) {
        let s: SampleTensors;
        try {
          s = await take(i);
        } catch (e) {
          if (!keepGoing) throw e;
          await flush(); // keeps the listed order: earlier pairs first
          failed.push({ name: pairs[i].name, file: pairs[i].a, message: (e as Error).message });
          progress();
          continue;
        }
        const plan = planFor(model, s.width, s.height, opts);
        if (s.width <= plan.tile && s.height <= plan.tile) {
          const fits = group.length < groupBatch && group.length > 0 &&
            group[0].width === s.width && group[0].height === s.height;
          if (!fits) await flush();
          if (group.length === 0) {
            groupStart = i;
            groupBatch = plan.batch;
          }
          group.push(s);
        } else {
          await flush();
          await attempt([i], async () => [await countTiled(model, s, opts, threshold)]);
        }
      }
      await flush();
    } finally {
      pool.close();
    }
    return { report: evaluate(perImage.map((r) => r.counts)), perImage, failed };
  });
}

/** Model failures (an image size the architecture cannot take, say) name the pair's files. */
async function withPairName<T>(pair: PairFiles, count: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const which = count > 1 ? `a batch of ${count} pairs starting at ${pair.a}` : pair.a;
    throw new Error(`${which}: the model failed: ${(e as Error).message}`);
  }
}
