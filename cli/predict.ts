// deno task predict --weights FILE --data DIR --out DIR [--model NAME] [--probs FILE]
// Change masks for every pair of a folder (whole scenes by sliding window), error overlays where
// labels exist, and optionally the probabilities. Every input file is checked (decoded) before
// the model runs; outputs go to a folder beside OUT that is renamed into place at the end, so a
// bad input never leaves a partial OUT behind. A pair that still fails mid-run (the model, a
// file changed meanwhile) is reported at the end, and the pairs that finished are kept.

import { basename, dirname, extname, isAbsolute, join, relative, resolve } from "node:path";
import { z } from "zod";
import { checkSplit, DatasetError, listNames, listSplit, type Problem } from "../data/dataset.ts";
import { binarizeLabel } from "../data/label.ts";
import { compareNames, type PairFiles, pairFiles } from "../data/pair_files.ts";
import {
  PngError,
  readGrayPng,
  readPngHeader,
  readRgbPng,
  writeGrayPng,
  writeRgbPng,
} from "../data/png.ts";
import { announceAdapter, initDevice, releaseDevice } from "../engine/device.ts";
import { loadCheckpoint } from "../engine/nn/checkpoint.ts";
import { type WriteEntry, writeSafetensors } from "../engine/safetensors.ts";
import type { ChangeDetector } from "../models/model.ts";
import { type ModelEntry, modelEntry, MODELS } from "../models/registry.ts";
import { errorOverlay } from "../train/overlay.ts";
import {
  DEFAULT_BATCH,
  DEFAULT_OVERLAP,
  DEFAULT_TILE,
  maskOf,
  normalizeImage,
  predictProbability,
} from "../train/predict.ts";
import { parseFlags } from "./args.ts";
import { resolveDataSplit, resolveModelName } from "./inputs.ts";

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
  --weights FILE     safetensors checkpoint (required)
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
  --threshold P      change probability above which a pixel is changed (default 0.5; for a
                     2-channel model 0.5 is the argmax)
  --overwrite        replace OUT if it exists and is not empty
  --quiet            no progress on stderr
  -h, --help         this text
`;

const modelNames = Object.keys(MODELS) as [string, ...string[]];

export const PredictFlags = z.object({
  weights: z.string().min(1),
  data: z.string().min(1),
  out: z.string().min(1),
  model: z.enum(modelNames).optional(),
  split: z.enum(["train", "val", "test"]).optional(),
  probs: z.string().min(1).optional(),
  tile: z.number().int().min(1).default(DEFAULT_TILE),
  overlap: z.number().int().min(0).default(DEFAULT_OVERLAP),
  batch: z.number().int().min(1).default(DEFAULT_BATCH),
  threshold: z.number().min(0).max(1).default(0.5),
  overwrite: z.boolean().default(false),
  quiet: z.boolean().default(false),
}).refine((f) => f.overlap < f.tile, {
  path: ["overlap"],
  message: "must be smaller than --tile",
});
export type PredictOptions = z.output<typeof PredictFlags>;
export { HELP as PREDICT_HELP };

// ---------------------------------------------------------------------------------------------
// Shared with cli/eval.ts

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
}

/** The registry entry and its model with the checkpoint loaded (strict keys, same model). */
export async function loadTrainedModel(
  name: string,
  weights: string,
): Promise<{ entry: ModelEntry; model: ChangeDetector }> {
  const entry = modelEntry(name);
  const st = await statOrNull(weights);
  if (!st) throw new Error(`${weights}: weights file not found (--weights)`);
  if (!st.isFile) throw new Error(`${weights}: not a file (--weights takes a .safetensors file)`);
  await initDevice();
  const model = entry.create(0);
  try {
    loadCheckpoint(model, weights, { strict: true, expectModel: name });
  } catch (e) {
    model.dispose();
    const msg = shortenLists((e as Error).message);
    throw new Error(msg.includes(weights) ? msg : `${weights}: ${msg}`);
  }
  return { entry, model: model.eval() };
}

/** A checkpoint of another architecture lists hundreds of keys; keep the first few per line. */
function shortenLists(message: string, width = 300): string {
  return message.split("\n").map((line) => {
    if (line.length <= width) return line;
    // A closing remark in parentheses (loadCheckpoint's hint) survives the cut.
    const remark = / \([^()]*\)$/.exec(line)?.[0] ?? "";
    const items = line.slice(0, line.length - remark.length).split(", ");
    let kept = items[0];
    let k = 1;
    while (k < items.length && kept.length + items[k].length + 2 < width) kept += `, ${items[k++]}`;
    return k < items.length ? `${kept}, … (${items.length - k} more)${remark}` : line;
  }).join("\n");
}

/** "done/total" lines on stderr: rewritten in place on a terminal, one per 10 % in logs. */
export function progressPrinter(what: string, quiet: boolean) {
  const start = performance.now(), tty = Deno.stderr.isTerminal(), enc = new TextEncoder();
  let lastShown = -1;
  return (done: number, total: number) => {
    if (quiet) return;
    const tenth = Math.floor((10 * done) / total);
    if (!tty && tenth === lastShown && done !== total) return;
    lastShown = tenth;
    const s = (performance.now() - start) / 1000;
    const line = `${what}: ${done}/${total} images  elapsed ${s.toFixed(0)} s`;
    Deno.stderr.writeSync(enc.encode(tty ? `\r${line}\x1b[K` : `${line}\n`));
    if (tty && done === total) Deno.stderr.writeSync(enc.encode("\n"));
  };
}

// ---------------------------------------------------------------------------------------------
// Input folder

const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"]);

/** Reads only the 33 bytes the PNG signature and IHDR chunk take. */
async function pngSize(path: string): Promise<{ width: number; height: number }> {
  const file = await Deno.open(path);
  try {
    const buf = new Uint8Array(33);
    let n = 0;
    while (n < buf.length) {
      const got = await file.read(buf.subarray(n));
      if (got === null) break;
      n += got;
    }
    return readPngHeader(buf.subarray(0, n), path);
  } finally {
    file.close();
  }
}

/** A/ and B/ without labels: partners, file types, sizes, and every image decoded. */
async function checkUnlabelled(dir: string): Promise<PairFiles[]> {
  const problems: Problem[] = [];
  const names: Record<"A" | "B", Set<string>> = { A: new Set(), B: new Set() };
  const fileOf: Record<"A" | "B", Map<string, string>> = { A: new Map(), B: new Map() };
  for (const folder of ["A", "B"] as const) {
    const path = join(dir, folder);
    const st = await statOrNull(path);
    if (!st?.isDirectory) {
      problems.push({
        file: path,
        problem: "folder missing",
        fix: "add B/ with the time-2 images",
      });
      continue;
    }
    // listNames follows symbolic links; NAME.PNG is NAME as NAME.png is.
    for (const file of (await listNames(path)).sort()) {
      const ext = extname(file).toLowerCase();
      const stem = file.slice(0, -ext.length);
      if (ext === ".png") {
        names[folder].add(stem);
        if (!fileOf[folder].has(stem)) fileOf[folder].set(stem, file);
      } else if (IMAGE_EXTENSIONS.has(ext)) {
        problems.push({
          file: join(path, file),
          problem: `not a PNG file (${ext})`,
          fix: `convert it to ${stem}.png (lossless)`,
        });
      }
    }
  }
  const pairs: PairFiles[] = [];
  const all = [...new Set([...names.A, ...names.B])].sort(compareNames);
  for (const name of all) {
    const p = pairFiles(dir, name, { A: fileOf.A.get(name), B: fileOf.B.get(name) });
    const [has, lacks] = names.A.has(name) ? ["A", "B"] : ["B", "A"];
    if (!names.A.has(name) || !names.B.has(name)) {
      if (problems.some((q) => q.file === join(dir, lacks))) continue; // folder already missing
      problems.push({
        file: lacks === "A" ? p.a : p.b,
        problem: `missing: ${has}/${name}.png has no partner`,
        fix: `add ${lacks}/${name}.png, or remove ${has}/${name}.png`,
      });
      continue;
    }
    const sizes = [];
    for (const file of [p.a, p.b]) {
      try {
        // The header first (cheap, names a non-PNG), then the whole file: a truncated or
        // corrupt image must stop the run here, not after other pairs were predicted.
        await pngSize(file);
        const { width, height } = await readRgbPng(file);
        sizes.push({ width, height });
      } catch (e) {
        const problem = e instanceof PngError ? e.problem : (e as Error).message;
        problems.push({ file, problem, fix: "re-export the file as an 8-bit RGB PNG" });
      }
    }
    if (sizes.length === 2) {
      const [a, b] = sizes;
      if (a.width !== b.width || a.height !== b.height) {
        problems.push({
          file: p.b,
          problem:
            `size ${b.width}×${b.height} differs from A/${name}.png (${a.width}×${a.height})`,
          fix: "A and B of a pair must have the same size; re-export or crop them alike",
        });
      }
    }
    pairs.push(p);
  }
  if (pairs.length === 0 && problems.length === 0) {
    problems.push({
      file: join(dir, "A"),
      problem: "no PNG pairs",
      fix: "put the time-1 images in A/ and the time-2 images in B/, same file names",
    });
  }
  if (problems.length) throw new DatasetError(dir, problems);
  return pairs;
}

/** The pairs of DIR, checked: every file decoded, labels (where label/ exists) binary. `only`
 * keeps just those names (the carved val split). */
export async function checkPredictFolder(
  dir: string,
  only: Set<string> | null = null,
): Promise<{ pairs: PairFiles[]; labelled: boolean }> {
  await listSplit(dir); // throws the layout hint when A/ is missing
  const keep = <T extends PairFiles>(pairs: T[]) =>
    only ? pairs.filter((p) => only.has(p.name)) : pairs;
  if ((await statOrNull(join(dir, "label")))?.isDirectory) {
    return { pairs: keep(await checkSplit(dir)), labelled: true };
  }
  return { pairs: keep(await checkUnlabelled(dir)), labelled: false };
}

// ---------------------------------------------------------------------------------------------
// Output folder: staged beside OUT, renamed into place when everything succeeded

async function isEmptyDir(path: string): Promise<boolean> {
  for await (const _ of Deno.readDir(path)) return false;
  return true;
}

async function checkOutFolder(out: string, overwrite: boolean): Promise<void> {
  const st = await statOrNull(out);
  if (!st) return;
  if (!st.isDirectory) throw new Error(`${out}: exists and is not a folder (--out)`);
  if (!overwrite && !(await isEmptyDir(out))) {
    throw new Error(
      `${out}: folder exists and is not empty; choose another --out or pass --overwrite`,
    );
  }
}

/** --probs relative to OUT when it lies inside OUT (then it is written into the staged folder,
 * which replaces OUT: written beside the old OUT it was deleted with it), else null. */
function probsInsideOut(probs: string, out: string): string | null {
  const rel = relative(resolve(out), resolve(probs));
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel : null;
}

async function checkProbsPath(path: string, out: string): Promise<void> {
  const inside = probsInsideOut(path, out);
  if (inside !== null) {
    if (extname(inside).toLowerCase() === ".png" || inside.split(/[\\/]/)[0] === "overlay") {
      throw new Error(
        `${path}: inside --out it would clash with the masks or overlays; ` +
          `name it e.g. ${join(out, "probs.safetensors")} (--probs)`,
      );
    }
    return; // its folders are made in the staged OUT
  }
  if (resolve(path) === resolve(out)) throw new Error(`${path}: is --out itself (--probs)`);
  const st = await statOrNull(path);
  if (st?.isDirectory) throw new Error(`${path}: is a folder; --probs takes a file name`);
  const parent = await statOrNull(dirname(resolve(path)));
  if (!parent?.isDirectory) throw new Error(`${path}: its folder does not exist (--probs)`);
}

interface Staging {
  dir: string;
  /** Ancestors of OUT this run created (deepest last), removed again on failure. */
  created: string[];
}

async function stageBeside(out: string): Promise<Staging> {
  const parent = dirname(resolve(out));
  const created: string[] = [];
  for (let d = parent; !(await statOrNull(d)); d = dirname(d)) created.unshift(d);
  await Deno.mkdir(parent, { recursive: true });
  // Deno.mkdir leaves the mode to the umask, as train's run folders (makeTempDir made it 0700).
  const dir = join(parent, `.${basename(out)}.partial-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(dir);
  return { dir, created };
}

async function abandon(s: Staging): Promise<void> {
  await Deno.remove(s.dir, { recursive: true }).catch(() => {});
  for (const d of [...s.created].reverse()) await Deno.remove(d).catch(() => {});
}

async function commit(s: Staging, out: string): Promise<void> {
  const st = await statOrNull(out);
  if (!st) return Deno.rename(s.dir, out);
  // An existing OUT (empty, or --overwrite) moves aside first, and goes once the new one is in.
  const old = `${s.dir}.old`;
  await Deno.rename(out, old);
  await Deno.rename(s.dir, out);
  await Deno.remove(old, { recursive: true });
}

// ---------------------------------------------------------------------------------------------

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
  const name = await resolveModelName(opts.model, opts.weights);
  const where = await resolveDataSplit(opts.data, opts.split);
  const { pairs, labelled } = await checkPredictFolder(where.dir, where.only);
  await checkOutFolder(opts.out, opts.overwrite);
  if (opts.probs) await checkProbsPath(opts.probs, opts.out);
  const { entry, model } = await loadTrainedModel(name, opts.weights);
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
        await writePair(staging.dir, pair, prob, labelled, opts.threshold);
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
        weights: basename(opts.weights),
        content: "change probability per image, [H, W] float32",
      });
    }
    await commit(staging, opts.out);
    staging = null;
  } finally {
    if (staging) await abandon(staging);
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

if (import.meta.main) {
  const flags = parseFlags(Deno.args, PredictFlags, { help: HELP, aliases: { o: "out" } });
  announceAdapter();
  try {
    const s = await runPredict(flags, {
      onProgress: progressPrinter("predict", flags.quiet),
      onNote: (n) => flags.quiet || console.error(`note: ${n}`),
    });
    console.log(
      `wrote ${s.images} mask${s.images === 1 ? "" : "s"} (${s.model}) to ${s.out}` +
        (s.labelled ? ` and error overlays to ${join(s.out, "overlay")}` : "") +
        (s.probs ? `; probabilities to ${s.probs}` : ""),
    );
    await releaseDevice(); // before exit 1 too: the device must not be dropped mid-queue
    if (s.failed.length) {
      console.error(
        `error: ${s.failed.length} pair${s.failed.length === 1 ? "" : "s"} failed ` +
          `(the others are written):\n${s.failed.map((f) => `  ${f.message}`).join("\n")}`,
      );
      Deno.exit(1);
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
