// `deno task eval` below its flags: the metrics of a checkpoint on a labelled split, per-image
// means (the paper's numbers), per class, pooled over the split, and mIoU per CAR quintile, as a
// table and as the JSON that --json saves (the schema of the demo's results.json, values in %).
// --data and --model are read as predict reads them. A pair failing mid-run is listed in
// `failed`; the others still count.

import { dirname, join, resolve } from "node:path";
import { checkEvalSplit } from "../data/pair_folder.ts";
import { evaluateModel, type Evaluation, type FailedPair } from "./evaluate.ts";
import { formatMetricsTable, type MetricsSummary, metricsSummary } from "./report_table.ts";
import {
  loadTrainedModel,
  resolveModelName,
  type WeightsFlags,
  weightsSource,
} from "./trained_model.ts";
import { probabilityThreshold } from "../models/registry.ts";

/** What the eval command's flags say (cli/eval.ts validates them). */
export interface EvalOptions extends WeightsFlags {
  /** A split folder, or a dataset root with `split`. */
  data: string;
  /** Registry name; default: the one the checkpoint records. */
  model?: string;
  split?: string;
  /** Also write the metrics here. */
  json?: string;
  tile: number;
  overlap: number;
  batch: number;
  /** Default: the model's own (registry `threshold`). */
  threshold?: number;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** What --json holds: the summary (in %) plus where it came from and every image's counts. */
export interface EvalJson extends MetricsSummary {
  /** Every metric and CAR is a percentage (as in the demo's results.json). */
  units: "%";
  model: string;
  weights: string;
  data: string;
  /** The split of a dataset root; null when --data was a split folder. */
  split: string | null;
  threshold: number;
  /** Pairs that failed mid-run, left out of every value above. */
  failed: FailedPair[];
  perImage: {
    name: string;
    /** Ground-truth and predicted change area ratio, %. */
    car: number;
    predictedCar: number;
    tp: number;
    fp: number;
    tn: number;
    fn: number;
  }[];
}

async function checkJsonPath(path: string): Promise<void> {
  let st: Deno.FileInfo | null = null;
  try {
    st = await Deno.stat(path);
  } catch { /* new file */ }
  if (st?.isDirectory) throw new Error(`${path}: is a folder; --json takes a file name`);
  if (!(await isDir(dirname(resolve(path))))) {
    throw new Error(`${path}: its folder does not exist (--json)`);
  }
}

/** Write via a temporary file and rename, so the file is whole or absent. */
async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeTextFile(tmp, JSON.stringify(value, null, 2) + "\n");
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`${path}: cannot write (${(e as Error).message})`);
  }
}

export interface EvalResult {
  evaluation: Evaluation;
  json: EvalJson;
  table: string;
}

/** The whole command after flag parsing; throws an error naming the file at fault. */
export async function runEval(
  opts: EvalOptions,
  onProgress?: (done: number, total: number) => void,
  onNote?: (note: string) => void,
): Promise<EvalResult> {
  const src = weightsSource(opts);
  const name = await resolveModelName(opts.model, src.path, src.formula);
  const { pairs, split } = await checkEvalSplit(opts.data, opts.split);
  if (opts.json) await checkJsonPath(opts.json);
  const { entry, model } = await loadTrainedModel(name, src.path, src.formula);
  const threshold = opts.threshold ?? probabilityThreshold(entry);
  const notes = new Set<string>();
  let evaluation: Evaluation;
  try {
    evaluation = await evaluateModel(model, pairs, {
      tile: opts.tile,
      overlap: opts.overlap,
      batch: opts.batch,
      sizeDivisor: entry.sizeDivisor,
      threshold,
      normalize: entry.normalize,
      onProgress,
      onNote: (n) => {
        if (!notes.has(n)) onNote?.(n);
        notes.add(n);
      },
      keepGoing: true,
    });
  } finally {
    model.dispose();
  }
  if (evaluation.perImage.length === 0 && evaluation.failed.length > 0) {
    throw new Error(
      `every pair failed:\n${evaluation.failed.map((f) => `  ${f.message}`).join("\n")}`,
    );
  }
  const summary = metricsSummary(evaluation.report);
  const json: EvalJson = {
    units: "%",
    model: name,
    weights: src.path,
    data: opts.data,
    split,
    threshold,
    failed: evaluation.failed,
    ...summary,
    perImage: evaluation.perImage.map((r) => ({
      name: r.name,
      car: 100 * r.car,
      predictedCar: 100 * r.predictedCar,
      ...r.counts,
    })),
  };
  const title = `${name} on ${split ? join(opts.data, split) : opts.data}`;
  const table = formatMetricsTable(summary, title);
  if (opts.json) await writeJsonAtomic(opts.json, json);
  return { evaluation, json, table };
}
