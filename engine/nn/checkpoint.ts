// Module checkpoints as safetensors, by PyTorch state_dict name. Loading is strict: one error
// lists every missing, unexpected and mis-shaped key; files we write carry the model's name so a
// checkpoint of another model is refused with that name, and one holding NaN or infinite weights
// (a diverged run) is refused naming its tensors, so nothing evaluates garbage without a word.

import { loadInto, readSafetensors, type SafeEntry, saveTensors } from "../safetensors.ts";
import type { Module } from "./module.ts";

export interface CheckpointInfo {
  /** Registry name of the model the file was saved from. */
  model?: string;
  [key: string]: string | undefined;
}

export async function saveCheckpoint(
  module: Module,
  path: string,
  info: CheckpointInfo = {},
): Promise<void> {
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(info)) if (v !== undefined) meta[k] = v;
  await saveTensors(path, module.stateDict(), meta);
}

/** Load `path` into `module`; `expectModel` rejects a file saved from another model. */
export function loadCheckpoint(
  module: Module,
  path: string,
  opts: { strict?: boolean; expectModel?: string } = {},
): Record<string, string> {
  const entries = readSafetensors(path);
  const saved = entries.metadata.model;
  if (opts.expectModel && saved && saved !== opts.expectModel) {
    throw new Error(
      `${path}: this checkpoint was saved from model "${saved}", not "${opts.expectModel}": ` +
        `pass --model ${saved} or the weights of a ${opts.expectModel} model`,
    );
  }
  const bad = nonFinite(entries);
  if (bad.length) {
    const shown = bad.slice(0, 5).map(([k, n]) => `${k} (${n})`).join(", ");
    throw new Error(
      `${path}: ${bad.length} tensor${bad.length === 1 ? "" : "s"} hold NaN or infinite values: ` +
        `${shown}${bad.length > 5 ? ", …" : ""}; the run that wrote it diverged — use an earlier ` +
        `checkpoint or retrain with a lower --lr`,
    );
  }
  try {
    loadInto(module.stateDict(), entries, { strict: opts.strict ?? true, name: path });
  } catch (e) {
    const hint = opts.expectModel ? ` (is it a checkpoint of "${opts.expectModel}"?)` : "";
    throw new Error(`${(e as Error).message}${hint}`);
  }
  return entries.metadata;
}

/** Float tensors of a file holding NaN or ±Infinity, with how many such values each has. */
export function nonFinite(entries: Map<string, SafeEntry>): [string, number][] {
  const out: [string, number][] = [];
  for (const [key, e] of entries) {
    if (!(e.data instanceof Float32Array || e.data instanceof Float64Array)) continue;
    if (e.dtype !== "F32" && e.dtype !== "F64" && e.dtype !== "F16" && e.dtype !== "BF16") continue;
    let n = 0;
    for (const v of e.data) if (!Number.isFinite(v)) n++;
    if (n) out.push([key, n]);
  }
  return out;
}
