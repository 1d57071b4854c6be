// deno task predict --weights FILE --data DIR --out DIR [--model NAME] [--probs FILE]
// The command's page: help, flags, and the summary it prints. The work (folder checks, staging,
// model loading, the sliding window) is train/predict_run.ts's runPredict.

import { join } from "node:path";
import { z } from "zod";
import { MODELS } from "../models/registry.ts";
import { DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_TILE } from "../train/predict.ts";
import { runPredict } from "../train/predict_run.ts";
import { progressPrinter } from "./progress.ts";
import { runCommand } from "./run.ts";

export { runPredict }; // the tests run the command's body from here, as it always was

const HELP = `Predict change masks for every image pair of a folder.

Usage:
  deno task predict --weights FILE --data DIR --out DIR [--model NAME] [--probs FILE]

DIR is a split folder holding A/ (time 1) and B/ (time 2) PNGs of the same names, and
optionally label/ (0/255 or 0/1), or a dataset root holding train/, val/, test/; then --split
picks one (default test), as for deno task eval. Every file is decoded and checked before the
model runs. Writes OUT/NAME.png (0 unchanged, 255 changed) and, where labels exist,
OUT/overlay/NAME.png: image B with missed changes in red, false alarms in blue and found
changes in white. Images larger than a tile run as a sliding window whose overlapping
probabilities are averaged, so a whole scene is predicted in one call; sides that are not a
multiple of the model's size divisor are padded for the model and cropped back. Tile and
batch shrink where the adapter's buffer limits require it (said on stderr). If a pair fails
mid-run, the others are still written and the failures are listed at the end (exit 1).

Flags:
  --weights FILE     safetensors checkpoint (this or --weights-formula is required)
  --weights-formula MANIFEST
                     generate the weights from a formula manifest instead (*_formula.json,
                     ../shared/fixtures/formula: the Table II parity weights)
  --data DIR         split folder, or dataset root with --split (required)
  --out DIR          output folder; must be new or empty unless --overwrite (required); created
                     with the usual permissions (umask)
  --model NAME       ${Object.keys(MODELS).join(", ")}
                     (default: the model the checkpoint records; the flag overrides it)
  --split S          train, val or test, for a dataset root (default test)
  --probs FILE       also write a safetensors file with prob.NAME = [H, W] float32 change
                     probabilities (sigmoid of 1-channel models, softmax channel 1 of 2-channel
                     ones); every map is held in memory until the end; may lie inside OUT
  --tile N           tile side in pixels (default ${DEFAULT_TILE}); smaller images run whole
  --overlap N        pixels shared by neighbouring tiles (default ${DEFAULT_OVERLAP})
  --batch N          tiles per forward pass (default ${DEFAULT_BATCH})
  --threshold P      change probability above which a pixel is changed (default: the model's
                     own, 0.5 but for ifn_vgg16's 0.3; for a 2-channel model 0.5 is the argmax)
  --overwrite        replace OUT if it exists and is not empty
  --quiet            no progress on stderr
  -h, --help         this text
`;

const modelNames = Object.keys(MODELS) as [string, ...string[]];

export const PredictFlags = z.object({
  weights: z.string().min(1).optional(),
  weightsFormula: z.string().min(1).optional(),
  data: z.string().min(1),
  out: z.string().min(1),
  model: z.enum(modelNames).optional(),
  split: z.enum(["train", "val", "test"]).optional(),
  probs: z.string().min(1).optional(),
  tile: z.number().int().min(1).default(DEFAULT_TILE),
  overlap: z.number().int().min(0).default(DEFAULT_OVERLAP),
  batch: z.number().int().min(1).default(DEFAULT_BATCH),
  threshold: z.number().min(0).max(1).optional(),
  overwrite: z.boolean().default(false),
  quiet: z.boolean().default(false),
}).refine((f) => f.overlap < f.tile, {
  path: ["overlap"],
  message: "must be smaller than --tile",
}).refine((f) => (f.weights === undefined) !== (f.weightsFormula === undefined), {
  path: ["weights"],
  message: "give one of --weights FILE and --weights-formula MANIFEST",
});
export { HELP as PREDICT_HELP };

export const PREDICT_SPEC = { help: HELP, flags: PredictFlags, aliases: { o: "out" } };

/** The command's body below its flags (exit code); tests run it in this process. */
export async function predictCommand(f: z.output<typeof PredictFlags>): Promise<number> {
  const s = await runPredict(f, {
    onProgress: progressPrinter("predict", f.quiet),
    onNote: (n) => f.quiet || console.error(`note: ${n}`),
  });
  console.log(
    `wrote ${s.images} mask${s.images === 1 ? "" : "s"} (${s.model}) to ${s.out}` +
      (s.labelled ? ` and error overlays to ${join(s.out, "overlay")}` : "") +
      (s.probs ? `; probabilities to ${s.probs}` : ""),
  );
  if (s.failed.length === 0) return 0;
  console.error(
    `error: ${s.failed.length} pair${s.failed.length === 1 ? "" : "s"} failed ` +
      `(the others are written):\n${s.failed.map((f) => `  ${f.message}`).join("\n")}`,
  );
  return 1;
}

runCommand(import.meta, PREDICT_SPEC, predictCommand);
