// A procedural JL1-like benchmark written as ROOT/{train,val,test}/{A,B,label}/*.png, with
// synth.json (parameters and CAR summary) and car_histogram.svg beside it. Pairs are made in
// workers; each pair's seed derives from (seed, split, index), so the bytes depend only on the
// parameters, not on timing or the number of workers.

import { join } from "node:path";
import { writeCarHistogram } from "./car_histogram.ts";
import { type SplitName, SPLITS } from "./dataset.ts";
import { THREE_TEACHERS } from "./partition.ts";
import { partitionName } from "./partition.ts";
import { hashSeed } from "./random.ts";
import { CAR_MIXTURE } from "./synth/car_target.ts";
import { MAX_SHIFT } from "./synth/pair.ts";
import type { SynthJob, SynthJobResult } from "./synth/write_pair.ts";
import { WorkerPool } from "./worker_pool.ts";

export const SYNTH_VERSION = 1;

export interface SynthOptions {
  out: string;
  /** All pairs, over all splits. */
  pairs: number;
  size: number;
  seed: number;
  /** Validation pairs (default 2 % of pairs, as JL1-CD's 100 of 5000); 0 writes no val folder. */
  val?: number;
  /** Test pairs (default 20 %, JL1-CD's 80:20 split). */
  test?: number;
  /** Replace train/, val/, test/ and the summary files if OUT already has them. */
  overwrite?: boolean;
  /** Worker count (default: all cores). */
  workers?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface CarSummary {
  count: number;
  mean: number;
  median: number;
  min: number;
  max: number;
  /** Share of pairs with no changed pixel. */
  zeroShare: number;
  /** Share of pairs with CAR ≤ 5 %. */
  under5Share: number;
  /** Pairs per partition of the paper's three-teacher split. */
  partitions: Record<string, number>;
}

export interface SynthSummary {
  generator: string;
  version: number;
  seed: number;
  size: number;
  pairs: number;
  splits: Record<SplitName, number>;
  maxShiftPx: number;
  targetCarMixture: typeof CAR_MIXTURE;
  car: Partial<Record<SplitName | "all", CarSummary>>;
  /** How often each change type was placed. */
  events: Record<string, number>;
}

/** Pairs per split: test and val by default 20 % and 2 %, train the rest. */
export function splitCounts(pairs: number, val?: number, test?: number): Record<SplitName, number> {
  const t = test ?? Math.round(pairs * 0.2);
  const v = val ?? Math.round(pairs * 0.02);
  const train = pairs - t - v;
  if (train < 1) {
    throw new Error(`${pairs} pairs leave no training pairs after ${v} val and ${t} test`);
  }
  return { train, val: v, test: t };
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

export function summarizeCars(cars: readonly number[]): CarSummary {
  const sorted = [...cars].sort((a, b) => a - b), n = sorted.length;
  const partitions: Record<string, number> = Object.fromEntries(
    THREE_TEACHERS.names.map((k) => [k, 0]),
  );
  for (const c of cars) partitions[partitionName(c, THREE_TEACHERS)]++;
  return {
    count: n,
    mean: round6(n ? cars.reduce((a, b) => a + b, 0) / n : 0),
    median: round6(n ? (sorted[(n - 1) >> 1] + sorted[n >> 1]) / 2 : 0),
    min: round6(n ? sorted[0] : 0),
    max: round6(n ? sorted[n - 1] : 0),
    zeroShare: round6(n ? cars.filter((c) => c === 0).length / n : 0),
    under5Share: round6(n ? cars.filter((c) => c <= 0.05).length / n : 0),
    partitions,
  };
}

async function prepareOut(out: string, overwrite: boolean): Promise<void> {
  const owned = [...SPLITS, "synth.json", "car_histogram.svg"];
  try {
    const clashes: string[] = [];
    for await (const e of Deno.readDir(out)) if (owned.includes(e.name)) clashes.push(e.name);
    if (clashes.length && !overwrite) {
      throw new Error(
        `${out} already holds ${clashes.join(", ")}; choose another output folder or overwrite`,
      );
    }
    for (const name of clashes) await Deno.remove(join(out, name), { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Write the benchmark; returns (and writes) the summary. */
export async function writeSynthDataset(opts: SynthOptions): Promise<SynthSummary> {
  const { out, pairs, size, seed } = opts;
  if (!Number.isInteger(size) || size < 16) throw new Error(`size must be an integer ≥ 16`);
  const counts = splitCounts(pairs, opts.val, opts.test);
  await prepareOut(out, opts.overwrite ?? false);
  const jobs: { split: SplitName; job: SynthJob }[] = [];
  SPLITS.forEach((split, splitIndex) => {
    const n = counts[split];
    const digits = Math.max(4, String(n).length);
    for (let i = 0; i < n; i++) {
      const name = String(i + 1).padStart(digits, "0");
      const job = { dir: join(out, split), name, seed: hashSeed(seed, splitIndex, i), size };
      jobs.push({ split, job });
    }
  });
  for (const split of SPLITS) {
    if (counts[split] === 0) continue;
    for (const f of ["A", "B", "label"]) await Deno.mkdir(join(out, split, f), { recursive: true });
  }
  const pool = new WorkerPool<SynthJob, SynthJobResult>(
    new URL("./synth/worker.ts", import.meta.url),
    Math.min(jobs.length, opts.workers ?? (navigator.hardwareConcurrency || 2)),
  );
  let done = 0;
  let results: SynthJobResult[];
  try {
    results = await Promise.all(jobs.map(async ({ job }) => {
      const r = await pool.run(job);
      opts.onProgress?.(++done, jobs.length);
      return r;
    }));
  } finally {
    pool.close();
  }
  const cars: Record<SplitName, number[]> = { train: [], val: [], test: [] };
  const events: Record<string, number> = {};
  results.forEach((r, i) => {
    cars[jobs[i].split].push(r.car);
    for (const e of r.events) events[e] = (events[e] ?? 0) + 1;
  });
  const car: SynthSummary["car"] = { all: summarizeCars(SPLITS.flatMap((s) => cars[s])) };
  for (const s of SPLITS) if (counts[s] > 0) car[s] = summarizeCars(cars[s]);
  const summary: SynthSummary = {
    generator: "jl1-like procedural change-detection benchmark",
    version: SYNTH_VERSION,
    seed,
    size,
    pairs,
    splits: counts,
    maxShiftPx: MAX_SHIFT,
    targetCarMixture: CAR_MIXTURE,
    car,
    events: Object.fromEntries(Object.entries(events).sort(([a], [b]) => (a < b ? -1 : 1))),
  };
  await Deno.writeTextFile(join(out, "synth.json"), JSON.stringify(summary, null, 2) + "\n");
  await writeCarHistogram(
    join(out, "car_histogram.svg"),
    SPLITS.filter((s) => counts[s] > 0).map((s) => ({ label: s, cars: cars[s] })),
    {
      title: `CAR distribution (synthetic, seed ${seed})`,
      thresholds: THREE_TEACHERS.thresholds,
      logScale: true,
    },
  );
  return summary;
}
