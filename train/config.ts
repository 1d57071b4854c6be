// Training configuration: one zod schema serves the JSON config file and the command-line flags,
// so every key can be set either way, and unknown keys or bad values are refused by name.

import { z } from "zod";
import { MODELS, probabilityThreshold } from "../models/registry.ts";

export const TrainConfigSchema = z.object({
  model: z.string().describe("registry name (deno task models lists them)"),
  data: z.string().describe("dataset root: ROOT/{train,val,test}/{A,B,label}"),
  out: z.string().describe("run folder: checkpoints, config.json, log.jsonl"),
  iters: z.number().int().positive().default(2000),
  batch: z.number().int().positive().default(8),
  lr: z.number().positive().optional().describe("initial LR (default: the model's recipe)"),
  weightDecay: z.number().nonnegative().optional(),
  warmup: z.number().int().nonnegative().optional().describe(
    "warm-up iterations (default 10 %, ≤ 1000)",
  ),
  schedule: z.enum(["linear", "cosine"]).default("linear"),
  seed: z.number().int().nonnegative().default(0),
  size: z.number().int().positive().default(512).describe("training crop size"),
  valEvery: z.number().int().positive().default(1000).describe("validate + checkpoint every N"),
  logEvery: z.number().int().positive().default(20),
  valCount: z.number().int().nonnegative().default(100)
    .describe("pairs of train taken as val when ROOT has no val/"),
  augment: z.boolean().default(true),
  workers: z.number().int().positive().optional(),
  init: z.string().optional().describe("start from these weights (e.g. M_O for the student)"),
  pretrained: z.string().optional().describe(
    "safetensors backbone (mmseg names) loaded into backbone.* before training",
  ),
  pretrainedSkip: z.array(z.string()).optional().describe(
    "file-key prefixes of --pretrained to leave out (e.g. layer4,fc)",
  ),
  resume: z.string().optional().describe("run folder (or its last.safetensors) to continue"),
  keepCheckpoints: z.boolean().default(false).describe("keep iter_N files, not just best/last"),
});

export type TrainConfig = z.infer<typeof TrainConfigSchema>;

/** Parse a JSON config file's object (strict: unknown keys are errors naming them). */
export function parseConfigObject(obj: unknown, file: string): Partial<TrainConfig> {
  const r = TrainConfigSchema.partial().strict().safeParse(obj);
  if (!r.success) {
    const msgs = r.error.issues.map((i) =>
      i.code === "unrecognized_keys"
        ? `unknown key(s) ${(i as { keys: string[] }).keys.join(", ")}`
        : `"${i.path.join(".")}": ${i.message}`
    );
    throw new Error(`${file}: ${msgs.join("; ")}`);
  }
  // Keep only the keys the file sets (partial() still fills in defaults).
  const given = new Set(Object.keys(obj as object));
  return Object.fromEntries(Object.entries(r.data).filter(([k]) => given.has(k))) as Partial<
    TrainConfig
  >;
}

/** Validation and test inference window for a run: whole images up to the training size,
 * larger ones by sliding window with 1/8 overlap; inputs pad to the model's size divisor, and
 * a pixel is changed above the model's own probability threshold. */
export function evalWindow(cfg: Pick<TrainConfig, "batch" | "size"> & { model?: string }) {
  const entry = cfg.model ? MODELS[cfg.model] : undefined;
  return {
    batch: cfg.batch,
    tile: cfg.size,
    overlap: Math.floor(cfg.size / 8),
    sizeDivisor: entry?.sizeDivisor,
    threshold: entry ? probabilityThreshold(entry) : 0.5,
  };
}
