// Batches of pairs for training and evaluation. PNGs are decoded in Deno workers, a few batches
// ahead of the consumer. The order depends only on (seed, step), so a run resumed at step s sees
// exactly the batches it would have seen. Geometric and photometric augmentation happen on the
// GPU elsewhere; this only crops.

import type { DecodeRequest, DecodeResult } from "./decode_worker.ts";
import type { PairFiles } from "./pair_files.ts";
import { hashSeed, mulberry32, shuffleInPlace } from "./random.ts";
import type { CropSpec, Normalize, SampleTensors } from "./sample.ts";
import { defaultWorkerCount, WorkerPool } from "./worker_pool.ts";

export type { Normalize };
/** ImageNet statistics (engine/normalize.ts, shared with the model registry). */
export { IMAGENET } from "../engine/normalize.ts";

export interface LoaderOptions {
  pairs: PairFiles[];
  batchSize: number;
  /** Seed of the shuffle order and crop positions (default 0). */
  seed?: number;
  /** Shuffle each epoch (default true). False: the given order, for evaluation. */
  shuffle?: boolean;
  /** Run through epochs without end (default: same as shuffle). False: one pass, then null. */
  repeat?: boolean;
  /** Drop the last incomplete batch of an epoch (default: same as shuffle). */
  dropLast?: boolean;
  /** Random crop to size × size (training); images must be at least that large. */
  cropSize?: number;
  /** First step to produce (resume): batches continue exactly where a run left off. */
  startStep?: number;
  /** Batches decoded ahead of the consumer (default 3). */
  prefetch?: number;
  /** Decode workers (default: cores − 1, at most 8). */
  workers?: number;
  /** Per-channel (x − mean) / std after scaling to [0, 1]; default: [0, 1] only. */
  normalize?: Normalize;
}

export interface Batch {
  /** Global step number of this batch (0-based, counting from the first epoch). */
  step: number;
  epoch: number;
  /** Number of pairs (can be below batchSize for the last batch when dropLast is false). */
  size: number;
  height: number;
  width: number;
  names: string[];
  /** Positions of the batch's pairs in `LoaderOptions.pairs` (to look up CAR, partition, …). */
  indices: number[];
  /** [size, 3, H, W] float32. */
  a: Float32Array;
  b: Float32Array;
  /** [size, H, W] 0/1. */
  label: Uint32Array;
}

export interface OrderOptions {
  shuffle?: boolean;
  dropLast?: boolean;
}

/** Batches in one epoch. */
export function stepsPerEpoch(n: number, batchSize: number, dropLast: boolean): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/** The order of pair indices in an epoch: a pure function of (n, seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number, shuffle = true): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  return shuffle ? shuffleInPlace(order, mulberry32(hashSeed(seed, epoch))) : order;
}

/** Pair indices of the batch at a global step (epochs follow one another). */
export function batchIndices(
  n: number,
  batchSize: number,
  seed: number,
  step: number,
  opts: OrderOptions = {},
): number[] {
  const shuffle = opts.shuffle ?? true;
  const perEpoch = stepsPerEpoch(n, batchSize, opts.dropLast ?? shuffle);
  if (perEpoch === 0) throw new Error(`${n} pairs make no batch of ${batchSize}`);
  const epoch = Math.floor(step / perEpoch);
  const i = step - epoch * perEpoch;
  return epochOrder(n, seed, epoch, shuffle).slice(i * batchSize, (i + 1) * batchSize);
}

export class BatchLoader implements AsyncIterableIterator<Batch> {
  readonly stepsPerEpoch: number;
  #opts: Required<Omit<LoaderOptions, "cropSize" | "normalize" | "workers">> & LoaderOptions;
  #pool: WorkerPool<DecodeRequest, DecodeResult>;
  #ahead: Promise<Batch>[] = [];
  #nextToQueue: number;
  #endStep: number;
  #orderCache = new Map<number, number[]>();
  #closed = false;

  constructor(opts: LoaderOptions) {
    const shuffle = opts.shuffle ?? true;
    this.#opts = {
      ...opts,
      // `??` rather than spread defaults: an explicit `seed: undefined` still means 0.
      seed: opts.seed ?? 0,
      startStep: opts.startStep ?? 0,
      prefetch: Math.max(1, opts.prefetch ?? 3),
      shuffle,
      repeat: opts.repeat ?? shuffle,
      dropLast: opts.dropLast ?? shuffle,
    };
    const { pairs, batchSize } = this.#opts;
    const check = (what: string, v: number, min: number) => {
      if (!Number.isInteger(v) || v < min) {
        throw new Error(`loader: ${what} must be an integer ≥ ${min}, got ${v}`);
      }
    };
    check("batchSize", batchSize, 1);
    if (opts.cropSize !== undefined) check("cropSize", opts.cropSize, 1);
    check("startStep", this.#opts.startStep, 0);
    this.stepsPerEpoch = stepsPerEpoch(pairs.length, batchSize, this.#opts.dropLast);
    if (this.stepsPerEpoch === 0) {
      throw new Error(
        `${pairs.length} pairs make no batch of ${batchSize}` +
          (this.#opts.dropLast ? " (the last incomplete batch is dropped)" : ""),
      );
    }
    this.#nextToQueue = this.#opts.startStep;
    this.#endStep = this.#opts.repeat ? Number.POSITIVE_INFINITY : this.stepsPerEpoch;
    const workers = opts.workers ?? defaultWorkerCount();
    this.#pool = new WorkerPool(new URL("./decode_worker.ts", import.meta.url), workers);
    this.#fill();
  }

  /** The next batch, or null after the last one (only when repeat is false). */
  async next(): Promise<IteratorResult<Batch>> {
    if (this.#closed) return { done: true, value: undefined };
    const head = this.#ahead.shift();
    if (!head) {
      this.close();
      return { done: true, value: undefined };
    }
    this.#fill();
    try {
      const value = await head;
      // The last batch of a single pass: stop the workers now, not when the caller remembers to.
      if (this.#ahead.length === 0 && this.#nextToQueue >= this.#endStep) this.close();
      return { done: false, value };
    } catch (e) {
      this.close(); // a failed batch ends the loader; its workers must not linger
      throw e;
    }
  }

  /** Convenience: the next batch or null. */
  async nextBatch(): Promise<Batch | null> {
    const r = await this.next();
    return r.done ? null : r.value;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Batch> {
    return this;
  }

  return(): Promise<IteratorResult<Batch>> {
    this.close();
    return Promise.resolve({ done: true, value: undefined });
  }

  /**
   * Stop the workers; batches not yet taken are dropped. Called automatically after the last
   * batch of a single pass and after an error; call it yourself when stopping early.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pool.close();
    this.#ahead = [];
  }

  #fill(): void {
    while (this.#ahead.length < this.#opts.prefetch && this.#nextToQueue < this.#endStep) {
      const p = this.#load(this.#nextToQueue++);
      p.catch(() => {}); // surfaced when next() awaits it; avoids an unhandled rejection meanwhile
      this.#ahead.push(p);
    }
  }

  #order(epoch: number): number[] {
    let order = this.#orderCache.get(epoch);
    if (!order) {
      order = epochOrder(this.#opts.pairs.length, this.#opts.seed, epoch, this.#opts.shuffle);
      this.#orderCache.clear(); // at most the epoch being read and the next one matter
      this.#orderCache.set(epoch, order);
    }
    return order;
  }

  async #load(step: number): Promise<Batch> {
    const { pairs, batchSize, seed, cropSize, normalize } = this.#opts;
    const epoch = Math.floor(step / this.stepsPerEpoch);
    const i = step - epoch * this.stepsPerEpoch;
    const indices = this.#order(epoch).slice(i * batchSize, (i + 1) * batchSize);
    const samples = await Promise.all(indices.map((idx, slot) => {
      let crop: CropSpec | undefined;
      if (cropSize) {
        const r = mulberry32(hashSeed(seed, step, slot, 0x63726f70));
        crop = { size: cropSize, u: r(), v: r() };
      }
      const req: DecodeRequest = { task: "load", pair: pairs[idx], crop, normalize };
      return this.#pool.run(req) as Promise<SampleTensors>;
    }));
    return assemble(step, epoch, indices, samples);
  }
}

function assemble(
  step: number,
  epoch: number,
  indices: number[],
  samples: SampleTensors[],
): Batch {
  const { width, height } = samples[0];
  for (const s of samples) {
    if (s.width !== width || s.height !== height) {
      throw new Error(
        `pairs of one batch differ in size: ${samples[0].name} is ${width}×${height}, ` +
          `${s.name} is ${s.width}×${s.height}; set a crop size or use batch size 1`,
      );
    }
  }
  const n = samples.length, plane = width * height;
  const names = samples.map((s) => s.name);
  if (n === 1) {
    const [s] = samples;
    return { step, epoch, size: 1, height, width, names, indices, a: s.a, b: s.b, label: s.label };
  }
  const a = new Float32Array(n * 3 * plane);
  const b = new Float32Array(n * 3 * plane);
  const label = new Uint32Array(n * plane);
  samples.forEach((s, k) => {
    a.set(s.a, k * 3 * plane);
    b.set(s.b, k * 3 * plane);
    label.set(s.label, k * plane);
  });
  return { step, epoch, size: n, height, width, names, indices, a, b, label };
}

/** Start a loader; call close() (or break out of a for-await loop) when done. */
export function openLoader(opts: LoaderOptions): BatchLoader {
  return new BatchLoader(opts);
}
