// The folders of pairs that predict and eval are pointed at (--data, --split), checked before
// any model runs. --data is a split folder (A/, B/, optional label/) or a dataset root whose
// --split (default test) is taken; val without a val/ folder is the first training pairs (the
// JL1-CD rule). A folder without label/ is checked here (partners, PNG only, equal sizes, every
// image decoded); a labelled one by the dataset checker. One DatasetError lists every bad file.

import { extname, join } from "node:path";
import {
  checkSplit,
  DatasetError,
  isSplitDir,
  listNames,
  listSplit,
  openSplit,
  type PairInfo,
  type Problem,
  type SplitName,
  SPLITS,
} from "./dataset.ts";
import { compareNames, type PairFiles, pairFiles } from "./pair_files.ts";
import { PngError, readPngHeader, readRgbPng } from "./png.ts";

/** The file's stat, or null when it does not exist; other failures name the path. */
export async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
}

/** Where the pairs of --data / --split are. */
export interface DataSplit {
  /** The folder holding A/, B/ (and label/). */
  dir: string;
  /** The split picked in a dataset root; null when --data was a split folder. */
  split: SplitName | null;
  /** Only these pair names of `dir` (the carved val: the first training pairs), or null. */
  only: Set<string> | null;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** Resolve --data and --split (undefined when not given) for predict and eval alike. */
export async function resolveDataSplit(data: string, split?: string): Promise<DataSplit> {
  if (!(await isDir(data))) throw new Error(`${data}: folder not found (--data)`);
  if (await isSplitDir(data)) {
    if (split !== undefined) {
      throw new Error(
        `${data}: is a split folder (it holds A/); --split ${split} applies to a dataset root ` +
          `holding train/, val/, test/: drop --split or pass the root`,
      );
    }
    return { dir: data, split: null, only: null };
  }
  const s = (split ?? "test") as SplitName;
  if (!SPLITS.includes(s)) throw new Error(`--split ${split}: expected ${SPLITS.join(", ")}`);
  if (await isDir(join(data, s))) return { dir: join(data, s), split: s, only: null };
  if (s === "val" && (await isDir(join(data, "train")))) {
    // openSplit applies the JL1-CD val rule (and says when train is too small for it).
    const carved = await openSplit(data, "val");
    return { dir: join(data, "train"), split: s, only: new Set(carved.map((p) => p.name)) };
  }
  throw new Error(
    `${data}: neither a split folder (A/, B/, label/) nor a dataset root with ${s}/ ` +
      `(--data takes either; --split picks the split of a root, default test)`,
  );
}

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
export async function checkPairFolder(
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

/** The split's pairs, every file of its folder checked (one error lists every bad file); the
 * labels must exist (eval). */
export async function checkEvalSplit(
  data: string,
  split?: string,
): Promise<{ pairs: PairInfo[]; split: string | null }> {
  const where = await resolveDataSplit(data, split);
  const checked = await checkSplit(where.dir);
  const only = where.only;
  return { pairs: only ? checked.filter((p) => only.has(p.name)) : checked, split: where.split };
}
