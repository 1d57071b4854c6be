// deno task eval --weights FILE --data DIR [--model NAME] [--split train|val|test] [--json FILE]
// The command's page: help, flags, and what it prints. The work (checks, model loading, metrics,
// the JSON) is train/eval_run.ts's runEval; --data and --model are read as predict reads them.

import { z } from "zod";
import { SPLITS } from "../data/dataset.ts";
import { MODELS } from "../models/registry.ts";
import { type EvalJson, runEval } from "../train/eval_run.ts";
import { DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_TILE } from "../train/predict.ts";
import { progressPrinter } from "./progress.ts";
import { runCommand } from "./run.ts";

export { type EvalJson, runEval }; // the tests run the command's body from here, as always

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
  --weights FILE     safetensors checkpoint (this or --weights-formula is required)
  --weights-formula MANIFEST
                     generate the weights from a formula manifest instead (*_formula.json,
                     ../shared/fixtures/formula: the Table II parity weights)
  --data DIR         split folder or dataset root (required)
  --model NAME       ${Object.keys(MODELS).join(", ")}
                     (default: the model the checkpoint records; the flag overrides it)
  --split S          train, val or test, for a dataset root (default test)
  --json FILE        also write the metrics as JSON (with per-image counts)
  --tile N           tile side for images larger than it (default ${DEFAULT_TILE})
  --overlap N        pixels shared by neighbouring tiles (default ${DEFAULT_OVERLAP})
  --batch N          images (or tiles) per forward pass (default ${DEFAULT_BATCH})
  --threshold P      change probability above which a pixel is changed (default: the model's
                     own, 0.5 but for ifn_vgg16's 0.3)
  --quiet            no progress on stderr
  -h, --help         this text
`;

const modelNames = Object.keys(MODELS) as [string, ...string[]];

export const EvalFlags = z.object({
  weights: z.string().min(1).optional(),
  weightsFormula: z.string().min(1).optional(),
  data: z.string().min(1),
  model: z.enum(modelNames).optional(),
  split: z.enum(SPLITS as [string, ...string[]]).optional(),
  json: z.string().min(1).optional(),
  tile: z.number().int().min(1).default(DEFAULT_TILE),
  overlap: z.number().int().min(0).default(DEFAULT_OVERLAP),
  batch: z.number().int().min(1).default(DEFAULT_BATCH),
  threshold: z.number().min(0).max(1).optional(),
  quiet: z.boolean().default(false),
}).refine((f) => f.overlap < f.tile, {
  path: ["overlap"],
  message: "must be smaller than --tile",
}).refine((f) => (f.weights === undefined) !== (f.weightsFormula === undefined), {
  path: ["weights"],
  message: "give one of --weights FILE and --weights-formula MANIFEST",
});
export { HELP as EVAL_HELP };

export const EVAL_SPEC = { help: HELP, flags: EvalFlags };

/** The command's body below its flags (exit code); tests run it in this process. */
export async function evalCommand(f: z.output<typeof EvalFlags>): Promise<number> {
  const r = await runEval(
    f,
    progressPrinter("eval", f.quiet),
    (n) => f.quiet || console.error(`note: ${n}`),
  );
  console.log(r.table);
  if (f.json) console.log(`\nwrote ${f.json}`);
  const failed = r.json.failed;
  if (failed.length === 0) return 0;
  console.error(
    `error: ${failed.length} pair${failed.length === 1 ? "" : "s"} failed and ` +
      `${failed.length === 1 ? "is" : "are"} left out of the metrics:\n` +
      failed.map((f) => `  ${f.message}`).join("\n"),
  );
  return 1;
}

runCommand(import.meta, EVAL_SPEC, evalCommand);
