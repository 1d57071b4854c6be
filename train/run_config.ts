// The configuration `deno task train` runs with, from three sources: the run folder's
// config.json when resuming, then a --config JSON file, then the flags typed on the command line
// (the schema's defaults never override a file). Validated as a whole; a missing key or bad value
// is named as its flag, and the crop is checked against the model before anything is read.

import { parseConfigObject, type TrainConfig, TrainConfigSchema } from "./config.ts";
import { checkTrainBatch, checkTrainSize } from "./model_size.ts";
import { MODELS } from "../models/registry.ts";

/** `flags`: the parsed flags (defaults filled in); `given`: the keys typed on the command line;
 * `configFile`: the --config file, if any. */
export async function resolveTrainConfig(
  flags: Partial<TrainConfig>,
  given: ReadonlySet<string>,
  configFile?: string,
): Promise<TrainConfig> {
  let merged: Record<string, unknown> = {};
  if (flags.resume) {
    const dir = flags.resume.replace(/\/last\.safetensors$/, "");
    merged = JSON.parse(
      await Deno.readTextFile(`${dir}/config.json`).catch(() => {
        throw new Error(
          `${dir}/config.json: missing; is ${dir} a run folder made by deno task train?`,
        );
      }),
    );
  }
  if (configFile) {
    const text = await Deno.readTextFile(configFile).catch(() => {
      throw new Error(`${configFile}: cannot read the config file`);
    });
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new Error(`${configFile}: not valid JSON (${(e as Error).message})`);
    }
    merged = { ...merged, ...parseConfigObject(obj, configFile) };
  }
  // Only flags typed on the command line override the config (the schema fills in defaults).
  for (const [k, v] of Object.entries(flags)) if (v !== undefined && given.has(k)) merged[k] = v;
  // The model's recipe may set its own default batch (ChangeStar FarSeg: 16, Table II).
  if (merged.batch === undefined && typeof merged.model === "string") {
    const batch = MODELS[merged.model]?.recipe.batch;
    if (batch !== undefined) merged.batch = batch;
  }
  const parsed = TrainConfigSchema.safeParse(merged);
  if (!parsed.success) {
    const missing = parsed.error.issues.map((i) => {
      const key = String(i.path[0]);
      const flag = `--${key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`;
      return merged[key] === undefined ? `${flag} is required` : `${flag}: ${i.message}`;
    });
    throw new Error(`bad training configuration: ${missing.join("; ")} (see --help)`);
  }
  if (parsed.data.pretrained && parsed.data.init && !parsed.data.resume) {
    throw new Error(
      "--pretrained and --init both given: --init replaces every weight, the backbone included; pass one of them",
    );
  }
  checkTrainSize(parsed.data.model, parsed.data.size);
  checkTrainBatch(parsed.data.model, parsed.data.batch);
  return parsed.data;
}
