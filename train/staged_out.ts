// Predict's output folder: checked before the model runs, written into a staging folder beside
// OUT and renamed into place only when everything succeeded, so a failed run never leaves a
// partial OUT (the old OUT, empty or --overwrite, goes once the new one is in). --probs may lie
// inside OUT; it is then written into the staged folder, which replaces OUT.

import { basename, dirname, extname, isAbsolute, join, relative, resolve } from "node:path";
import { statOrNull } from "../data/pair_folder.ts";

async function isEmptyDir(path: string): Promise<boolean> {
  for await (const _ of Deno.readDir(path)) return false;
  return true;
}

/** OUT must be new, or an empty folder, or any folder with --overwrite. */
export async function checkOutFolder(out: string, overwrite: boolean): Promise<void> {
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
export function probsInsideOut(probs: string, out: string): string | null {
  const rel = relative(resolve(out), resolve(probs));
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel : null;
}

/** --probs: a file name, in an existing folder or inside OUT away from masks and overlays. */
export async function checkProbsPath(path: string, out: string): Promise<void> {
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

export interface Staging {
  dir: string;
  /** Ancestors of OUT this run created (deepest last), removed again on failure. */
  created: string[];
}

/** A new hidden folder beside OUT (creating OUT's missing ancestors, which are recorded). */
export async function stageBeside(out: string): Promise<Staging> {
  const parent = dirname(resolve(out));
  const created: string[] = [];
  for (let d = parent; !(await statOrNull(d)); d = dirname(d)) created.unshift(d);
  await Deno.mkdir(parent, { recursive: true });
  // Deno.mkdir leaves the mode to the umask, as train's run folders (makeTempDir made it 0700).
  const dir = join(parent, `.${basename(out)}.partial-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(dir);
  return { dir, created };
}

/** Remove the staged folder and the ancestors this run created. */
export async function abandonStaging(s: Staging): Promise<void> {
  await Deno.remove(s.dir, { recursive: true }).catch(() => {});
  for (const d of [...s.created].reverse()) await Deno.remove(d).catch(() => {});
}

/** Rename the staged folder to OUT, replacing an existing OUT. */
export async function commitStaging(s: Staging, out: string): Promise<void> {
  const st = await statOrNull(out);
  if (!st) return Deno.rename(s.dir, out);
  // An existing OUT (empty, or --overwrite) moves aside first, and goes once the new one is in.
  const old = `${s.dir}.old`;
  await Deno.rename(out, old);
  await Deno.rename(s.dir, out);
  await Deno.remove(old, { recursive: true });
}
