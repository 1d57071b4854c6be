// The two arguments predict and eval share, read the same way by both: --data (a split folder,
// or a dataset root with --split picking one, default test; val without a val/ folder is the
// first training pairs, the JL1-CD rule) and --model (optional: the name the checkpoint records
// in its metadata; the flag overrides it, for files saved elsewhere).

import { join } from "node:path";
import { isSplitDir, openSplit, type SplitName, SPLITS } from "../data/dataset.ts";
import { MODELS } from "../models/registry.ts";

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

/** The model name a safetensors checkpoint records (metadata "model"), or undefined. Reads only
 * the header. */
export async function checkpointModel(path: string): Promise<string | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${path}: weights file not found (--weights)`);
    }
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    const read = async (n: number) => {
      const buf = new Uint8Array(n);
      let got = 0;
      while (got < n) {
        const k = await file.read(buf.subarray(got));
        if (k === null) break;
        got += k;
      }
      return buf.subarray(0, got);
    };
    const head = await read(8);
    if (head.length < 8) return undefined; // loading it names the problem
    const len = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (len <= 0 || len > 100_000_000) return undefined;
    const meta = JSON.parse(new TextDecoder().decode(await read(len)))?.__metadata__;
    return typeof meta?.model === "string" ? meta.model : undefined;
  } catch {
    return undefined; // not safetensors: loading the checkpoint says so, naming the file
  } finally {
    file.close();
  }
}

/** --model if given, else the checkpoint's recorded model; one of the registry's names. */
export async function resolveModelName(flag: string | undefined, weights: string) {
  const recorded = await checkpointModel(weights);
  const name = flag ?? recorded;
  if (name === undefined) {
    throw new Error(
      `${weights}: the checkpoint does not record its model; pass --model NAME ` +
        `(${Object.keys(MODELS).join(", ")})`,
    );
  }
  if (!MODELS[name]) {
    throw new Error(
      `${weights}: records model "${name}", which this version does not know; ` +
        `pass --model NAME (${Object.keys(MODELS).join(", ")})`,
    );
  }
  return name;
}
