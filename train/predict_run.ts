// `deno task predict` below its flags: change masks for every pair of a folder (whole scenes by
// sliding window), error overlays where labels exist, and optionally the probabilities. Every
// input file is checked (decoded) before the model runs; outputs are staged beside OUT and
// renamed into place at the end (staged_out.ts), so a bad input never leaves a partial OUT
// behind. A pair that still fails mid-run (the model, a file changed meanwhile) is reported in
// the summary, and the pairs that finished are kept.

import { basename, dirname, join } from "node:path";
import { binarizeLabel } from "../data/label.ts";
import { checkPairFolder, resolveDataSplit } from "../data/pair_folder.ts";
import type { PairFiles } from "../data/pair_files.ts";
import { readGrayPng, readRgbPng, writeGrayPng, writeRgbPng } from "../data/png.ts";
import { type WriteEntry, writeSafetensors } from "../engine/safetensors.ts";
import type { ChangeDetector } from "../models/model.ts";
import { type ModelEntry, probabilityThreshold } from "../models/registry.ts";
import { errorOverlay } from "./overlay.ts";
import { maskOf, normalizeImage, predictProbability } from "./predict.ts";
import {
  abandonStaging,
  checkOutFolder,
  checkProbsPath,
  commitStaging,
  probsInsideOut,
  stageBeside,
  type Staging,
} from "./staged_out.ts";
import {
  loadTrainedModel,
  resolveModelName,
  type WeightsFlags,
  weightsSource,
} from "./trained_model.ts";

/** What the predict command's flags say (cli/predict.ts validates them). */
export interface PredictOptions extends WeightsFlags {
  /** A split folder, or a dataset root with `split`. */
  data: string;
  out: string;
  /** Registry name; default: the one the checkpoint records. */
  model?: string;
  split?: string;
  /** Also write the change probabilities to this safetensors file. */
  probs?: string;
  tile: number;
  overlap: number;
  batch: number;
  /** Default: the model's own (registry `threshold`). */
  threshold?: number;
  /** Replace a non-empty OUT. */
  overwrite: boolean;
}

export interface PredictSummary {
  /** Pairs written. */
  images: number;
  labelled: boolean;
  out: string;
  probs?: string;
  /** The model that ran (--model, or the one the checkpoint records). */
  model: string;
  /** Pairs that failed mid-run (the rest were written), with the reason. */
  failed: { file: string; message: string }[];
}

/** Hooks for the command's output: progress per pair, and planning notes (smaller tile or
 * batch for the adapter's limits), each once. */
export interface PredictHooks {
  onProgress?: (done: number, total: number) => void;
  onNote?: (note: string) => void;
}

/** The whole command after flag parsing. Bad input throws an error naming the file, before
 * anything is written; a pair failing mid-run is listed in `failed` and the rest are written
 * (when every pair fails, nothing is written and the error lists them). */
export async function runPredict(
  opts: PredictOptions,
  hooks: PredictHooks | ((done: number, total: number) => void) = {},
): Promise<PredictSummary> {
  const { onProgress, onNote } = typeof hooks === "function" ? { onProgress: hooks } : hooks;
  const src = weightsSource(opts);
  const name = await resolveModelName(opts.model, src.path, src.formula);
  const where = await resolveDataSplit(opts.data, opts.split);
  const { pairs, labelled } = await checkPairFolder(where.dir, where.only);
  await checkOutFolder(opts.out, opts.overwrite);
  if (opts.probs) await checkProbsPath(opts.probs, opts.out);
  const { entry, model } = await loadTrainedModel(name, src.path, src.formula);
  const threshold = opts.threshold ?? probabilityThreshold(entry);
  const failed: PredictSummary["failed"] = [];
  let staging: Staging | null = null;
  try {
    staging = await stageBeside(opts.out);
    if (labelled) await Deno.mkdir(join(staging.dir, "overlay"));
    const probs = new Map<string, WriteEntry>();
    const notes = new Set<string>();
    const window = {
      tile: opts.tile,
      overlap: opts.overlap,
      batch: opts.batch,
      sizeDivisor: entry.sizeDivisor,
      onNote: (n: string) => {
        if (!notes.has(n)) onNote?.(n);
        notes.add(n);
      },
    };
    for (const [i, pair] of pairs.entries()) {
      try {
        const prob = await predictPair(entry, model, pair, window);
        await writePair(staging.dir, pair, prob, labelled, threshold);
        if (opts.probs) {
          probs.set(`prob.${pair.name}`, {
            dtype: "F32",
            shape: [prob.height, prob.width],
            data: prob.data,
          });
        }
      } catch (e) {
        const m = (e as Error).message;
        const named = [pair.a, pair.b, pair.label].some((f) => m.includes(f));
        failed.push({ file: pair.a, message: named ? m : `${pair.a}: ${m}` });
      }
      onProgress?.(i + 1, pairs.length);
    }
    if (failed.length === pairs.length) {
      throw new Error(
        `every pair failed, nothing written:\n${failed.map((f) => `  ${f.message}`).join("\n")}`,
      );
    }
    if (opts.probs) {
      const inside = probsInsideOut(opts.probs, opts.out);
      const file = inside === null ? opts.probs : join(staging.dir, inside);
      await Deno.mkdir(dirname(file), { recursive: true });
      writeSafetensors(file, probs, {
        model: name,
        weights: basename(src.path),
        content: "change probability per image, [H, W] float32",
      });
    }
    await commitStaging(staging, opts.out);
    staging = null;
  } finally {
    if (staging) await abandonStaging(staging);
    model.dispose();
  }
  return {
    images: pairs.length - failed.length,
    labelled,
    out: opts.out,
    probs: opts.probs,
    model: name,
    failed,
  };
}

/** One pair's change probabilities, [H, W]; errors name the pair's file. */
async function predictPair(
  entry: ModelEntry,
  model: ChangeDetector,
  pair: PairFiles,
  window: Parameters<typeof predictProbability>[2],
): Promise<{ width: number; height: number; data: Float32Array }> {
  const [a, b] = [await readRgbPng(pair.a), await readRgbPng(pair.b)];
  const { width, height } = a;
  const images = {
    width,
    height,
    a: normalizeImage(a, entry.normalize),
    b: normalizeImage(b, entry.normalize),
  };
  try {
    return { width, height, data: await predictProbability(model, images, window) };
  } catch (e) {
    throw new Error(
      `${pair.a}: the model failed on this ${width}×${height} pair: ${(e as Error).message}`,
    );
  }
}

/** The mask, and where labels exist the error overlay, of one pair into `dir`. */
async function writePair(
  dir: string,
  pair: PairFiles,
  prob: { width: number; height: number; data: Float32Array },
  labelled: boolean,
  threshold: number,
): Promise<void> {
  const { width, height } = prob;
  const mask = maskOf(prob.data, threshold);
  const png = Uint8Array.from(mask, (v) => v * 255);
  await writeGrayPng(join(dir, `${pair.name}.png`), { width, height, data: png });
  if (labelled) {
    const label = binarizeLabel((await readGrayPng(pair.label)).data);
    const overlay = errorOverlay(await readRgbPng(pair.b), label, mask);
    await writeRgbPng(join(dir, "overlay", `${pair.name}.png`), overlay);
  }
}
