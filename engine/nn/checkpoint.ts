// Module checkpoints as safetensors, by PyTorch state_dict name. Loading is strict: one error
// lists every missing, unexpected and mis-shaped key; files we write carry the model's name so a
// checkpoint of another model is refused with that name.

import { loadInto, readSafetensors, saveTensors } from "../safetensors.ts";
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
  try {
    loadInto(module.stateDict(), entries, { strict: opts.strict ?? true, name: path });
  } catch (e) {
    const hint = opts.expectModel ? ` (is it a checkpoint of "${opts.expectModel}"?)` : "";
    throw new Error(`${(e as Error).message}${hint}`);
  }
  return entries.metadata;
}
