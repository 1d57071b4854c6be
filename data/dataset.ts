// Dataset folders in the JL1-CD / Open-CD layout, ROOT/{train,val,test}/{A,B,label}/*.png, or a
// single split folder DIR/{A,B,label} for predict and eval. Also the validator that runs before
// training: it reads every file once and throws one error listing every problem and its fix.

import { extname, join, relative } from "node:path";
import type { DecodeRequest, DecodeResult } from "./decode_worker.ts";
import { compareNames, type PairFiles, pairFiles } from "./pair_files.ts";
import type { CheckNote, PairCheck, Problem } from "./sample.ts";
import { defaultWorkerCount, WorkerPool } from "./worker_pool.ts";

export type { PairFiles, Problem };
export type SplitName = "train" | "val" | "test";
export const SPLITS: readonly SplitName[] = ["train", "val", "test"];
const FOLDERS = ["A", "B", "label"] as const;

/** The JL1-CD paper's rule: without a val folder, the first 100 training pairs validate. */
export const DEFAULT_VAL_COUNT = 100;

export interface DatasetOptions {
  /** Pairs taken from the start of train (natural name order) when ROOT has no val folder. */
  valCount?: number;
}

export interface Dataset {
  root: string;
  train: PairFiles[];
  val: PairFiles[];
  test: PairFiles[];
  /** True when val was carved out of train (ROOT had no val folder). */
  valFromTrain: boolean;
}

/** A dataset folder that cannot be used; `problems` lists every bad file. */
export class DatasetError extends Error {
  constructor(readonly root: string, readonly problems: Problem[]) {
    super(formatProblems(root, problems));
    this.name = "DatasetError";
  }
}

function formatProblems(root: string, problems: Problem[]): string {
  const head = `dataset ${root} has ${problems.length} problem${problems.length === 1 ? "" : "s"}:`;
  const lines = problems.map((p) => {
    const file = relative(root, p.file) || p.file;
    return `  ${file}: ${p.problem}\n      fix: ${p.fix}`;
  });
  return [head, ...lines].join("\n");
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** True when DIR holds a split directly (DIR/A exists). */
export function isSplitDir(dir: string): Promise<boolean> {
  return isDir(join(dir, "A"));
}

/** Files of a folder, hidden ones skipped; symbolic links count when they lead to a file, and
 * links that lead nowhere go to `broken`. */
export async function listNames(dir: string, broken: string[] = []): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith(".")) continue;
    if (e.isFile) names.push(e.name);
    else if (e.isSymlink) {
      const target = await Deno.stat(join(dir, e.name)).catch(() => null);
      if (target?.isFile) names.push(e.name);
      else if (!target) broken.push(e.name);
    }
  }
  return names;
}

const isPng = (file: string) => extname(file).toLowerCase() === ".png";
const stem = (file: string) => file.slice(0, -extname(file).length);

/** The PNGs of a folder by stem (".png" in any case: NAME.PNG is NAME); missing folder: empty. */
export async function pngFiles(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (!(await isDir(dir))) return out;
  for (const f of (await listNames(dir)).sort()) {
    if (isPng(f) && !out.has(stem(f))) out.set(stem(f), f);
  }
  return out;
}

/** The pairs of a split folder, named by the PNGs in A, in natural name order. No checks. */
export async function listSplit(dir: string): Promise<PairFiles[]> {
  if (!(await isSplitDir(dir))) {
    throw new DatasetError(dir, [{
      file: join(dir, "A"),
      problem: "folder missing",
      fix: "a split folder holds A/ (time 1), B/ (time 2) and label/ with PNGs of the same names",
    }]);
  }
  const [a, b, label] = await Promise.all(FOLDERS.map((f) => pngFiles(join(dir, f))));
  return [...a.keys()].sort(compareNames).map((n) =>
    pairFiles(dir, n, { A: a.get(n), B: b.get(n), label: label.get(n) })
  );
}

/** Split the training list by the val rule: first `valCount` pairs validate, the rest train. */
export function carveValidation(
  train: PairFiles[],
  valCount: number,
): { train: PairFiles[]; val: PairFiles[] } {
  const sorted = [...train].sort((x, y) => compareNames(x.name, y.name));
  return { val: sorted.slice(0, valCount), train: sorted.slice(valCount) };
}

/** Open ROOT/{train,val,test}. Lists files only; run checkDataset first to validate them. */
export async function openDataset(root: string, opts: DatasetOptions = {}): Promise<Dataset> {
  const valCount = opts.valCount ?? DEFAULT_VAL_COUNT;
  await checkRoot(root);
  if (!(await isDir(join(root, "train")))) {
    const hint = (await isSplitDir(root))
      ? `${root} is a single split (it has A/B/label); training needs ROOT/train/{A,B,label}`
      : `expected ROOT/train/{A,B,label} (and optionally val/ and test/)`;
    throw new DatasetError(root, [{
      file: join(root, "train"),
      problem: "folder missing",
      fix: hint,
    }]);
  }
  const all = await listSplit(join(root, "train"));
  const test = (await hasSplit(join(root, "test"))) ? await listSplit(join(root, "test")) : [];
  if (await isDir(join(root, "val"))) {
    return { root, train: all, val: await listSplit(join(root, "val")), test, valFromTrain: false };
  }
  checkCarve(root, all.length, valCount);
  return { root, ...carveValidation(all, valCount), test, valFromTrain: true };
}

/** A root that does not exist (or is a file) is named as such, not as a missing train/. */
async function checkRoot(root: string): Promise<void> {
  const st = await Deno.stat(root).catch(() => null);
  if (st?.isDirectory) return;
  throw new DatasetError(root, [{
    file: root,
    problem: st ? "not a folder" : "does not exist",
    fix: "--data takes the dataset root, the folder that holds train/{A,B,label} " +
      "(and optionally val/ and test/); check the path",
  }]);
}

/** A split folder whose A/, B/ and label/ hold no files (or do not exist) counts as absent: an
 * empty test/ must not stop training, which does not read it. */
async function hasSplit(dir: string): Promise<boolean> {
  if (!(await isDir(dir))) return false;
  for (const f of FOLDERS) {
    if ((await isDir(join(dir, f))) && (await listNames(join(dir, f))).length > 0) return true;
  }
  return false;
}

/** The val rule needs at least one validation pair and one training pair. */
function checkCarve(root: string, pairs: number, valCount: number): void {
  if (valCount < 1) {
    throw new DatasetError(root, [{
      file: join(root, "val"),
      problem: `no val folder, and a validation count of ${valCount} leaves nothing to validate ` +
        "on (mIoU would be NaN and no best checkpoint chosen)",
      fix: "pass --val-count 1 or more, or add ROOT/val/{A,B,label}",
    }]);
  }
  if (pairs <= valCount) {
    throw new DatasetError(root, [{
      file: join(root, "train"),
      problem: `no val folder, and train has only ${pairs} pairs to take ${valCount} from`,
      fix: "add ROOT/val/{A,B,label}, or lower the validation count (--val-count)",
    }]);
  }
}

/**
 * The pairs of one split for predict/eval: PATH itself when it holds A/B/label, else
 * PATH/<split> (val follows the dataset rule when PATH has no val folder).
 */
export async function openSplit(
  path: string,
  split: SplitName = "test",
  opts: DatasetOptions = {},
): Promise<PairFiles[]> {
  if (await isSplitDir(path)) return listSplit(path);
  if (split === "val" && !(await isDir(join(path, "val")))) {
    return (await openDataset(path, opts)).val;
  }
  return listSplit(join(path, split));
}

// ---------------------------------------------------------------------------------------------
// Validation

export interface PairInfo extends PairFiles {
  width: number;
  height: number;
  /** Change Area Ratio of the label. */
  car: number;
}

export interface CheckOptions {
  /** Decode workers (default: cores − 1). */
  workers?: number;
  /** Called after each pair is read. */
  onProgress?: (done: number, total: number) => void;
  /** Decisions worth a line in the check's summary (an empty split skipped, alpha ignored). */
  onNote?: (note: string) => void;
}

const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"]);

/** Problems visible from file names alone, and the complete triples to decode. */
async function scanSplit(dir: string): Promise<{ problems: Problem[]; pairs: PairFiles[] }> {
  const problems: Problem[] = [];
  const present: Record<string, Set<string>> = {};
  const fileOf: Record<string, Map<string, string>> = {};
  for (const folder of FOLDERS) {
    const path = join(dir, folder);
    present[folder] = new Set();
    fileOf[folder] = new Map();
    if (!(await isDir(path))) {
      problems.push({
        file: path,
        problem: "folder missing",
        fix: `create ${folder}/ with ${
          { A: "the time-1 images", B: "the time-2 images", label: "the change labels" }[folder]
        } (PNG, same names as in A/)`,
      });
      continue;
    }
    const broken: string[] = [];
    for (const file of (await listNames(path, broken)).sort()) {
      const ext = extname(file).toLowerCase();
      if (ext === ".png" && fileOf[folder].has(stem(file))) {
        problems.push({
          file: join(path, file),
          problem: `two files for one name: ${fileOf[folder].get(stem(file))} and ${file}`,
          fix: "keep one of them (extensions are read case-insensitively)",
        });
      } else if (ext === ".png") {
        present[folder].add(stem(file));
        fileOf[folder].set(stem(file), file);
      } else if (IMAGE_EXTENSIONS.has(ext)) {
        problems.push({
          file: join(path, file),
          problem: `not a PNG file (${ext})`,
          fix: `convert it to ${stem(file)}.png (lossless; labels must stay exactly binary)`,
        });
      }
    }
    for (const file of broken) {
      problems.push({
        file: join(path, file),
        problem: `symbolic link to a missing file (${await Deno.readLink(join(path, file))})`,
        fix: "point the link at an existing image, or remove it",
      });
    }
  }
  const names = [...new Set(FOLDERS.flatMap((f) => [...present[f]]))].sort(compareNames);
  const pairs: PairFiles[] = [];
  for (const name of names) {
    const files = pairFiles(dir, name, {
      A: fileOf.A.get(name),
      B: fileOf.B.get(name),
      label: fileOf.label.get(name),
    });
    const missing = FOLDERS.filter((f) => !present[f].has(name));
    if (missing.length === 0) {
      pairs.push(files);
      continue;
    }
    const have = FOLDERS.filter((f) => present[f].has(name)).map((f) => `${f}/${name}.png`);
    for (const f of missing) {
      if (!(await isDir(join(dir, f)))) continue; // already reported as a missing folder
      problems.push({
        file: files[f === "A" ? "a" : f === "B" ? "b" : "label"],
        problem: `missing: ${have.join(" and ")} ${have.length === 1 ? "has" : "have"} no partner`,
        fix: `add ${f}/${name}.png, or remove ${have.join(" and ")}`,
      });
    }
  }
  if (pairs.length === 0 && problems.length === 0) {
    problems.push({
      file: join(dir, "A"),
      problem: "no PNG pairs",
      fix: "put the time-1 images in A/, time-2 in B/ and labels in label/, same file names",
    });
  }
  return { problems, pairs };
}

/** Decode every pair in workers, keeping only each pair's summary in memory. */
async function inspectAll(
  pairs: PairFiles[],
  opts: CheckOptions,
  progress: { done: number; total: number },
): Promise<PairCheck[]> {
  if (pairs.length === 0) return [];
  const pool = new WorkerPool<DecodeRequest, DecodeResult>(
    new URL("./decode_worker.ts", import.meta.url),
    Math.min(pairs.length, opts.workers ?? defaultWorkerCount()),
  );
  try {
    return await Promise.all(pairs.map(async (pair) => {
      const r = (await pool.run({ task: "check", pair })) as PairCheck;
      opts.onProgress?.(++progress.done, progress.total);
      return r;
    }));
  } finally {
    pool.close();
  }
}

/** Scan and decode splits; one list of problems for all of them. */
async function checkSplits(
  root: string,
  dirs: string[],
  opts: CheckOptions,
): Promise<PairInfo[][]> {
  const scans = await Promise.all(dirs.map(scanSplit));
  const all = scans.flatMap((s) => s.pairs);
  const checks = await inspectAll(all, opts, { done: 0, total: all.length });
  const problems = [...scans.flatMap((s) => s.problems), ...checks.flatMap((c) => c.problems)];
  for (const note of summarizeNotes(root, checks.flatMap((c) => c.notes ?? []))) {
    opts.onNote?.(note);
  }
  if (problems.length > 0) {
    problems.sort((x, y) => compareNames(x.file, y.file));
    throw new DatasetError(root, problems);
  }
  let k = 0;
  return scans.map((s) =>
    s.pairs.map((p) => {
      const c = checks[k++];
      return { ...p, width: c.width, height: c.height, car: c.car };
    })
  );
}

/** One line per kind of note: how many files, and the first of them. */
export function summarizeNotes(root: string, notes: CheckNote[]): string[] {
  const byNote = new Map<string, string[]>();
  for (const n of notes) byNote.set(n.note, [...(byNote.get(n.note) ?? []), n.file]);
  return [...byNote].map(([note, files]) => {
    const first = relative(root, files[0]) || files[0];
    return `${files.length} image${files.length === 1 ? "" : "s"} (e.g. ${first}): ${note}`;
  });
}

/** Validate one split folder DIR/{A,B,label}; returns its pairs with sizes and CAR. */
export async function checkSplit(dir: string, opts: CheckOptions = {}): Promise<PairInfo[]> {
  const [pairs] = await checkSplits(dir, [dir], opts);
  return pairs;
}

export interface CheckedDataset {
  root: string;
  train: PairInfo[];
  val: PairInfo[];
  test: PairInfo[];
  valFromTrain: boolean;
}

/**
 * Validate ROOT/{train,val,test} and apply the val rule. Throws one DatasetError listing every
 * bad file in every split; returns the pairs with their sizes and CAR.
 */
export async function checkDataset(
  root: string,
  opts: CheckOptions & DatasetOptions = {},
): Promise<CheckedDataset> {
  const valCount = opts.valCount ?? DEFAULT_VAL_COUNT;
  if (!(await isDir(join(root, "train")))) await openDataset(root, opts); // throws the hint
  const present: SplitName[] = [];
  for (const s of SPLITS) {
    if (s === "train" ? true : await hasSplit(join(root, s))) present.push(s);
    else if (await isDir(join(root, s))) opts.onNote?.(`${join(root, s)} is empty: skipped`);
  }
  if (!present.includes("val")) checkCarve(root, Infinity, valCount); // before decoding
  const checked = await checkSplits(root, present.map((s) => join(root, s)), opts);
  const bySplit: Record<SplitName, PairInfo[]> = { train: [], val: [], test: [] };
  present.forEach((s, i) => bySplit[s] = checked[i]);
  if (present.includes("val")) return { root, ...bySplit, valFromTrain: false };
  checkCarve(root, bySplit.train.length, valCount);
  const carved = carveValidation(bySplit.train, valCount) as { train: PairInfo[]; val: PairInfo[] };
  return { root, train: carved.train, val: carved.val, test: bySplit.test, valFromTrain: true };
}
