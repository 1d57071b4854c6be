// What a trained run depends on, as one hash: every setting that changes its weights (not where
// it is written, how often it logs or how many decode workers read the data), the training and
// validation pairs (names, sizes, CARs: moving the data folder keeps it, other data changes it),
// the contents of its starting weights, and the distillation weight. Stored in each checkpoint,
// it lets a resumed run or a reused experiment member be checked against what is asked now.

import { existsSync } from "node:fs";
import type { PairInfo } from "../data/dataset.ts";
import type { TrainConfig } from "./config.ts";

/** Settings that do not change the trained weights. */
const IGNORED = new Set(["out", "resume", "workers", "logEvery", "keepCheckpoints", "data"]);
/** Compared by content, not by path (an experiment folder may move). */
const BY_CONTENT = new Set(["init", "pretrained"]);

export interface RunKeyInput {
  cfg: TrainConfig;
  trainPairs: PairInfo[];
  valPairs: PairInfo[];
  /** MTKD's λ when the run distils. */
  lambda?: number;
  /** MTKD's soft-target margin (distill --route-margin); 0 / absent leaves the key as before. */
  kdMargin?: number;
}

/** The settings that count, as stored in config.json (for messages naming what differs). */
export function keySettings(cfg: Partial<TrainConfig>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(cfg).filter(([k, v]) => !IGNORED.has(k) && !BY_CONTENT.has(k) && v !== undefined)
      .sort(),
  );
}

/** The configuration a run actually trains with: a --size above the smallest training image
 * crops at that image's side (config.json records this, and the run key hashes it). */
export function runConfig(cfg: TrainConfig, trainPairs: PairInfo[]): TrainConfig {
  const minSide = Math.min(...trainPairs.map((p) => Math.min(p.width, p.height)));
  return cfg.size > minSide ? { ...cfg, size: minSide } : cfg;
}

/** SHA-256 (hex) of the run's key (`cfg` as runConfig returns it). */
export async function runKey(k: RunKeyInput): Promise<string> {
  const pairs = (ps: PairInfo[]) => ps.map((p) => [p.name, p.width, p.height, p.car]);
  const fileHash = async (f?: string) =>
    f && existsSync(f) ? await sha256(Deno.readFileSync(f)) : f;
  const doc = {
    settings: keySettings(k.cfg),
    init: await fileHash(k.cfg.init),
    pretrained: await fileHash(k.cfg.pretrained),
    train: pairs(k.trainPairs),
    val: pairs(k.valPairs),
    lambda: k.lambda ?? null,
    ...(k.kdMargin ? { kdMargin: k.kdMargin } : {}),
  };
  return await sha256(new TextEncoder().encode(JSON.stringify(doc)));
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `key: was → now` for each setting that differs between a run's config.json and a request. */
export function settingDiffs(was: Partial<TrainConfig>, now: Partial<TrainConfig>): string[] {
  const a = keySettings(was), b = keySettings(now);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((k) =>
    `${k} ${JSON.stringify(a[k]) ?? "unset"} → ${JSON.stringify(b[k]) ?? "unset"}`
  );
}
