// `--pretrained FILE`: an ImageNet backbone (safetensors) loaded into a model's `backbone.*`
// before training, as Open-CD's `model.pretrained` / `init_cfg` does for MiT-b0 and
// ResNetV1c-18. mmseg's pretrained files name their tensors without the `backbone.` prefix;
// keys that already carry it are accepted too. Unlike mmseg (which loads non-strictly and only
// logs what did not match), every file key without a backbone tensor, every backbone tensor the
// file lacks and every wrong shape is an error naming them all; nothing is written then.

import { loadInto, readSafetensors, type SafeEntry } from "../engine/safetensors.ts";
import type { Module } from "../engine/nn/module.ts";

const PREFIX = "backbone.";

/** Buffers a pretrained file may lack (not learned: BatchNorm's step counter). */
const OPTIONAL = /(^|\.)num_batches_tracked$/;

export interface PretrainedOptions {
  /** File-key prefixes (without `backbone.`) to leave out, e.g. a ResNet's unused `layer4`. */
  skip?: string[];
}

/** Load `file` into `model`'s backbone; returns the number of tensors loaded. */
export function loadPretrained(model: Module, file: string, opts: PretrainedOptions = {}): number {
  const skip = (opts.skip ?? []).map((s) => s.replace(/^backbone\./, "")).filter((s) => s);
  const targets = new Map([...model.stateDict()].filter(([k]) => k.startsWith(PREFIX)));
  if (targets.size === 0) {
    throw new Error(
      `${file}: this model has no backbone.* parameters, so --pretrained cannot apply: drop --pretrained (it is for models with an ImageNet backbone)`,
    );
  }
  const entries = readSafetensors(file);
  const mapped = new Map<string, SafeEntry>();
  const unexpected: string[] = [], wrongShape: string[] = [];
  const found = new Set<string>();
  for (const [key, e] of entries) {
    const bare = key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key;
    if (skip.some((s) => bare === s || bare.startsWith(s + "."))) continue;
    const name = PREFIX + bare;
    const t = targets.get(name);
    if (!t) unexpected.push(key);
    else if (t.shape.join() !== e.shape.join()) {
      wrongShape.push(`${key}: file [${e.shape.join(", ")}], model [${t.shape.join(", ")}]`);
      found.add(name);
    } else {
      mapped.set(name, e);
      found.add(name);
    }
  }
  const missing = [...targets.keys()].filter((k) => !found.has(k) && !OPTIONAL.test(k));
  if (unexpected.length || wrongShape.length || missing.length) {
    const parts: string[] = [];
    if (wrongShape.length) parts.push(`wrong shape: ${wrongShape.join("; ")}`);
    if (unexpected.length) {
      parts.push(`in the file but not in the model's backbone: ${unexpected.join(", ")}`);
    }
    if (missing.length) parts.push(`backbone tensors the file lacks: ${missing.join(", ")}`);
    throw new Error(
      `${file}: cannot load as this model's pretrained backbone:\n  ${parts.join("\n  ")}\n` +
        "Fix: pass the backbone file of this model's architecture (mmseg names, with or without " +
        '"backbone."); file tensors the model does not use can be left out with --pretrained-skip ' +
        "PREFIX[,PREFIX] (e.g. layer4,fc for a 3-stage ResNet)",
    );
  }
  const present = new Map([...targets].filter(([k]) => mapped.has(k)));
  loadInto(present, mapped, { name: file });
  return present.size;
}
