// The marker a finished member leaves in its run folder, RUN/member.json, written atomically as
// its last act: its run key (train/run_key.ts), the hash of its training and validation pairs,
// the model, and its metrics (last step, best validation mIoU). A member folder without it is
// not finished (never started, still running, or killed); the per-member commands (op --member,
// distill --lambda-index) and the commands that need the members (op --route-only, distill) read
// it to tell a finished member from a missing or a different one.

import { existsSync } from "node:fs";
import { join } from "node:path";
import type { PairInfo } from "../data/dataset.ts";

export const MARKER = "member.json";
const FORMAT = 1;

export interface MemberMarker {
  format: number;
  /** The member's name in messages (original, small, …, student λ=0.0001). */
  member: string;
  model: string;
  /** runKey of the configuration that trained it. */
  configHash: string;
  /** Hash of the training and validation pairs (pairsKey). */
  pairsHash: string;
  step: number;
  best: { step: number; mIoU: number } | null;
  finishedAt: string;
}

export const markerPath = (runDir: string) => join(runDir, MARKER);

/** The marker of a finished member, or null when the folder has none. */
export function readMarker(runDir: string): MemberMarker | null {
  const p = markerPath(runDir);
  if (!existsSync(p)) return null;
  let m: MemberMarker;
  try {
    m = JSON.parse(Deno.readTextFileSync(p));
  } catch (e) {
    throw new Error(`${p}: unreadable (${(e as Error).message}); delete it and rerun the member`);
  }
  if (m.format !== FORMAT || typeof m.configHash !== "string") {
    throw new Error(`${p}: not a member marker of this version; delete it and rerun the member`);
  }
  return m;
}

/** Write the marker atomically (a temporary file renamed into place). */
export function writeMarker(runDir: string, m: Omit<MemberMarker, "format" | "finishedAt">): void {
  const p = markerPath(runDir);
  const tmp = `${p}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const doc: MemberMarker = { format: FORMAT, ...m, finishedAt: new Date().toISOString() };
  Deno.writeTextFileSync(tmp, JSON.stringify(doc, null, 2) + "\n");
  Deno.renameSync(tmp, p);
}

/** SHA-256 (hex) of the pairs a member trains and validates on (names, sizes, CARs). */
export async function pairsKey(train: PairInfo[], val: PairInfo[]): Promise<string> {
  const rows = (ps: PairInfo[]) => ps.map((p) => [p.name, p.width, p.height, p.car]);
  const bytes = new TextEncoder().encode(JSON.stringify({ train: rows(train), val: rows(val) }));
  const d = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}
