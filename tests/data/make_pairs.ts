// Test helpers: write small real PNG pairs into split folders.

import { join } from "node:path";
import { writeGrayPng, writeRgbPng } from "../../data/png.ts";
import { rng } from "../util.ts";

export const LEVIR = new URL("../../../shared/fixtures/levir-cd", import.meta.url).pathname;

/** True when the shared fixtures exist; otherwise prints why the caller skips. */
export async function haveLevir(): Promise<boolean> {
  try {
    await Deno.stat(join(LEVIR, "A"));
    return true;
  } catch {
    console.log(`skipped: ${LEVIR} is absent (the shared fixtures are not part of a clone)`);
    return false;
  }
}

export interface PairSpec {
  size?: number;
  /** Changed pixels: the first `changed` pixels in row-major order. */
  changed?: number;
  /** The value written for changed pixels (255 or 1). */
  on?: number;
  seed?: number;
}

export async function makeSplitDirs(dir: string): Promise<void> {
  for (const f of ["A", "B", "label"]) await Deno.mkdir(join(dir, f), { recursive: true });
}

/** A pair whose A/B pixels are seeded noise and whose label marks `changed` pixels. */
export async function writePair(dir: string, name: string, spec: PairSpec = {}): Promise<void> {
  const size = spec.size ?? 8, r = rng(spec.seed ?? name.length * 7919 + size);
  const rgb = () => Uint8Array.from({ length: size * size * 3 }, () => Math.floor(r() * 256));
  const label = new Uint8Array(size * size);
  label.fill(spec.on ?? 255, 0, spec.changed ?? 0);
  await writeRgbPng(join(dir, "A", `${name}.png`), { width: size, height: size, data: rgb() });
  await writeRgbPng(join(dir, "B", `${name}.png`), { width: size, height: size, data: rgb() });
  await writeGrayPng(join(dir, "label", `${name}.png`), { width: size, height: size, data: label });
}

/** Write `n` pairs named 1..n (unpadded, so natural and string order differ). */
export async function writeSplit(dir: string, n: number, spec: PairSpec = {}): Promise<void> {
  await makeSplitDirs(dir);
  await Promise.all(Array.from({ length: n }, (_, i) => writePair(dir, String(i + 1), spec)));
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Hash of every file under a folder, by relative path. */
export async function hashTree(root: string, sub = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(join(root, sub))) {
    const rel = join(sub, e.name);
    if (e.isDirectory) Object.assign(out, await hashTree(root, rel));
    else out[rel] = await sha256Hex(await Deno.readFile(join(root, rel)));
  }
  return out;
}
