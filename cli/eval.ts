// deno task eval --weights FILE --data DIR [--model NAME] [--split train|val|test] [--json FILE]
// The metrics of a checkpoint on a labelled split: per-image means (the paper's numbers), per
// class, pooled over the split, and mIoU per CAR quintile. Prints a table; --json saves it in
// the schema of the demo's results.json (values in %). --data and --model are read as predict
// reads them (cli/inputs.ts). A pair failing mid-run is listed; the others still count.

import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { announceAdapter, releaseDevice } from "../engine/device.ts";
import { checkSplit, type PairInfo, SPLITS } from "../data/dataset.ts";
import { MODELS } from "../models/registry.ts";
import { evaluateModel, type Evaluation, type FailedPair } from "../train/evaluate.ts";
import { DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_TILE } from "../train/predict.ts";
import { formatMetricsTable, type MetricsSummary, metricsSummary } from "../train/report_table.ts";
import { parseFlags } from "./args.ts";
import { resolveDataSplit, resolveModelName } from "./inputs.ts";
import { loadTrainedModel, progressPrinter } from "./predict.ts";

const HELP = `Evaluate a checkpoint on a labelled split.

Usage:
  deno task eval --weights FILE --data DIR [--model NAME] [--split train|val|test] [--json FILE]

DIR is a split folder (A/, B/, label/) or a dataset root holding train/, val/, test/; then
--split picks one (default test), as for deno task predict. Without a val/ folder, val is the
first 100 training pairs (the JL1-CD rule). Every file of the split folder is checked before
the model runs. Sides that are not a multiple of the model's size divisor are padded for the
model and cropped back; batch and tile shrink where the adapter's buffer limits require it.
A pair that fails mid-run is listed at the end and left out of the metrics (exit 1).

Prints per-image means of mIoU, mAcc, mPrecision and mFscore (the paper's metrics), the
per-class values, the same from counts pooled over the split, and mIoU per CAR quintile.
All values are in %, in the JSON too (the schema of the demo's results.json: mIoU, …,
perClass.changed.IoU, pooled, carQuintiles).

Flags:
  --weights FILE     safetensors checkpoint (required)
  --data DIR         split folder or dataset root (required)
  --model NAME       ${Object.keys(MODELS).join(", ")}
                     (default: the model the checkpoint records; the flag overrides it)
  --split S          train, val or test, for a dataset root (default test)
  --json FILE        also write the metrics as JSON (with per-image counts)
  --tile N           tile side for images larger than it (default ${DEFAULT_TILE})
  --overlap N        pixels shared by neighbouring tiles (default ${DEFAULT_OVERLAP})
  --batch N          images (or tiles) per forward pass (default ${DEFAULT_BATCH})
  --threshold P      change probability above which a pixel is changed (default 0.5)
  --quiet            no progress on stderr
  -h, --help         this text
`;

const modelNames = Object.keys(MODELS) as [string, ...string[]];

export const EvalFlags = z.object({
  weights: z.string().min(1),
  data: z.string().min(1),
  model: z.enum(modelNames).optional(),
  split: z.enum(SPLITS as [string, ...string[]]).optional(),
  json: z.string().min(1).optional(),
  tile: z.number().int().min(1).default(DEFAULT_TILE),
  overlap: z.number().int().min(0).default(DEFAULT_OVERLAP),
  batch: z.number().int().min(1).default(DEFAULT_BATCH),
  threshold: z.number().min(0).max(1).default(0.5),
  quiet: z.boolean().default(false),
}).refine((f) => f.overlap < f.tile, {
  path: ["overlap"],
  message: "must be smaller than --tile",
});
export type EvalOptions = z.output<typeof EvalFlags>;
export { HELP as EVAL_HELP };

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

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** The split's pairs, every file of its folder checked (one error lists every bad file). */
export async function checkEvalSplit(
  data: string,
  split?: string,
): Promise<{ pairs: PairInfo[]; split: string | null }> {
  const where = await resolveDataSplit(data, split);
  const checked = await checkSplit(where.dir);
  const only = where.only;
  return { pairs: only ? checked.filter((p) => only.has(p.name)) : checked, split: where.split };
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
  const name = await resolveModelName(opts.model, opts.weights);
  const { pairs, split } = await checkEvalSplit(opts.data, opts.split);
  if (opts.json) await checkJsonPath(opts.json);
  const { entry, model } = await loadTrainedModel(name, opts.weights);
  const notes = new Set<string>();
  let evaluation: Evaluation;
  try {
    evaluation = await evaluateModel(model, pairs, {
      tile: opts.tile,
      overlap: opts.overlap,
      batch: opts.batch,
      sizeDivisor: entry.sizeDivisor,
      threshold: opts.threshold,
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
    weights: opts.weights,
    data: opts.data,
    split,
    threshold: opts.threshold,
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

if (import.meta.main) {
  const flags = parseFlags(Deno.args, EvalFlags, { help: HELP });
  announceAdapter();
  try {
    const r = await runEval(
      flags,
      progressPrinter("eval", flags.quiet),
      (n) => flags.quiet || console.error(`note: ${n}`),
    );
    console.log(r.table);
    if (flags.json) console.log(`\nwrote ${flags.json}`);
    await releaseDevice();
    const failed = r.json.failed;
    if (failed.length) {
      console.error(
        `error: ${failed.length} pair${failed.length === 1 ? "" : "s"} failed and ` +
          `${failed.length === 1 ? "is" : "are"} left out of the metrics:\n` +
          failed.map((f) => `  ${f.message}`).join("\n"),
      );
      Deno.exit(1);
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
