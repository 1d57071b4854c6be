// A run's checkpoints as committed units. Each file was already written atomically, but the set
// (weights, optimiser state, run state, best) was not: a kill inside a save left state.json one
// checkpoint behind the weights and --resume mixed them. Now a save writes one step folder
//   RUN/checkpoints/step_N/{model,optim}.safetensors + state.json
// under a temporary name, renames it into place, and commits it by atomically replacing the
// pointer RUN/checkpoint.json; only then are RUN/last.safetensors, RUN/best.safetensors (and
// iter_N.safetensors) published as hard links to the committed files. Whatever a crash leaves
// (a *.tmp-* file or folder, a step folder no pointer names, stale published links) is cleaned
// or re-published on resume, and every file is checked to belong to the pointer's step.
// Run folders of the earlier layout (top-level state.json) are migrated when consistent.

import { existsSync } from "node:fs";
import { join } from "node:path";

export interface RunState {
  step: number;
  best: { step: number; mIoU: number } | null;
  /** runKey of the configuration that trained this run (absent in migrated runs). */
  configHash?: string;
}

export const POINTER = "checkpoint.json";
const FORMAT = 1;
const stepName = (step: number) => `step_${step}`;
const ckptDir = (runDir: string) => join(runDir, "checkpoints");
export const stepDir = (runDir: string, step: number) => join(ckptDir(runDir), stepName(step));

export interface SaveWriters {
  /** Write the weights (a checkpoint with metadata `step`) to this path. */
  model: (path: string) => Promise<void>;
  /** Write the optimiser state (metadata `step`) to this path. */
  optim: (path: string) => Promise<void>;
}

const tmpName = (path: string) => `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;

/** Save `state` as one committed unit; see the header for the order of the steps. */
export async function commitCheckpoint(
  runDir: string,
  state: RunState,
  w: SaveWriters,
  opts: { keepIter?: boolean } = {},
): Promise<void> {
  const final = stepDir(runDir, state.step);
  const tmp = tmpName(final);
  try {
    Deno.mkdirSync(tmp, { recursive: true });
    await w.model(join(tmp, "model.safetensors"));
    await w.optim(join(tmp, "optim.safetensors"));
    Deno.writeTextFileSync(join(tmp, "state.json"), JSON.stringify(state) + "\n");
  } catch (e) {
    // Nothing of this save is committed: leave no partial step folder behind.
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* never created */ }
    throw saveError(runDir, state.step, e as Error);
  }
  // A folder of this step no pointer names is a leftover of a save cut short: replace it.
  if (existsSync(final)) Deno.removeSync(final, { recursive: true });
  Deno.renameSync(tmp, final);
  writeAtomic(join(runDir, POINTER), JSON.stringify({ format: FORMAT, ...state }) + "\n");
  publish(runDir, state, opts.keepIter ?? false);
  collect(runDir, state);
}

/** A failed save, said as what the run still has and what to do (a full disk is the common
 * cause: a suite's run folders filled /tmp on a CI machine). */
function saveError(runDir: string, step: number, e: Error): Error {
  const last = committedState(runDir);
  const kept = last
    ? `the run keeps its checkpoint of step ${last.step}`
    : "the run has no checkpoint yet";
  const full = /No space left on device|os error 28|ENOSPC/i.test(e.message);
  const fix = full
    ? `free space on that disk, then continue with --resume ${runDir}`
    : `fix that, then continue with --resume ${runDir}`;
  return new Error(`checkpoint of step ${step} not saved (${kept}): ${e.message}; ${fix}`, {
    cause: e,
  });
}

/** The committed state of a run folder (a legacy top-level state.json counts), or null.
 * Cheap: reads only the pointer (or the legacy state.json). */
export function committedState(runDir: string): RunState | null {
  const p = join(runDir, POINTER);
  if (existsSync(p)) return readPointer(p);
  const legacy = join(runDir, "state.json");
  if (existsSync(legacy)) return JSON.parse(Deno.readTextFileSync(legacy)) as RunState;
  return null;
}

/** The weights file of the committed best (or last) checkpoint, or null. */
export function committedWeights(runDir: string, which: "best" | "last"): string | null {
  const s = committedState(runDir);
  if (!s) return null;
  const step = which === "best" ? s.best?.step ?? s.step : s.step;
  const inSet = join(stepDir(runDir, step), "model.safetensors");
  if (existsSync(join(runDir, POINTER))) return inSet;
  const legacy = join(runDir, `${which}.safetensors`);
  return existsSync(legacy) ? legacy : null;
}

/**
 * Make a run folder ready to resume: migrate the earlier layout, clean what a crash left,
 * check that every file of the committed checkpoint belongs to its step, and re-publish
 * last/best. Returns the committed state and the files to load, or null when the run never
 * committed a checkpoint (it starts again from step 0).
 */
export function prepareResume(
  runDir: string,
): { state: RunState; model: string; optim: string } | null {
  if (!existsSync(join(runDir, POINTER)) && existsSync(join(runDir, "state.json"))) {
    migrateLegacy(runDir);
  }
  cleanLeftovers(runDir);
  const p = join(runDir, POINTER);
  if (!existsSync(p)) return null;
  const state = readPointer(p);
  const dir = stepDir(runDir, state.step);
  const model = join(dir, "model.safetensors"), optim = join(dir, "optim.safetensors");
  const inner = join(dir, "state.json");
  for (const f of [model, optim, inner]) {
    if (!existsSync(f)) {
      throw new Error(
        `${f}: missing, but ${p} names step ${state.step}: the run folder was changed by hand; ` +
          `start a new run (--init ${join(runDir, "best.safetensors")} keeps the weights)`,
      );
    }
  }
  const pointer = JSON.parse(Deno.readTextFileSync(p)) as { migrated?: boolean };
  // [file, the step it must carry, the step it carries]; a migrated run's optimiser file was
  // written without metadata (its step follows from last's, checked at migration).
  const checks: [string, number, string | undefined][] = [
    [inner, state.step, String((JSON.parse(Deno.readTextFileSync(inner)) as RunState).step)],
    [model, state.step, headerMetadata(model).step],
    [
      optim,
      state.step,
      headerMetadata(optim).step ?? (pointer.migrated ? String(state.step) : undefined),
    ],
  ];
  if (state.best) {
    const b = join(stepDir(runDir, state.best.step), "model.safetensors");
    checks.push([b, state.best.step, existsSync(b) ? headerMetadata(b).step : "(missing)"]);
  }
  const bad = checks.filter(([, want, got]) => got !== String(want));
  if (bad.length > 0) {
    throw new Error(
      `${runDir}: the checkpoint files do not belong to the steps ${p} names (` +
        bad.map(([f, want, got]) => `${f}: step ${got}, not ${want}`).join("; ") +
        `); the folder was changed by hand: start a new run`,
    );
  }
  publish(runDir, state, false);
  collect(runDir, state);
  return { state, model, optim };
}

/** Drop the log lines of steps after `step` (work a crash or Ctrl-C lost since that checkpoint). */
export function truncateLog(path: string, step: number): void {
  if (!existsSync(path)) return;
  const lines = Deno.readTextFileSync(path).split("\n").filter((l) => l.trim() !== "");
  const kept = lines.filter((l) => {
    try {
      const s = JSON.parse(l).step;
      return typeof s !== "number" || s <= step;
    } catch {
      return false; // a line cut short by the crash
    }
  });
  if (kept.length !== lines.length) {
    writeAtomic(path, kept.map((l) => l + "\n").join(""));
  }
}

/** Remove temporary files and folders a crash left (`*.tmp-*`) in the run folder. */
export function cleanLeftovers(runDir: string): void {
  for (const dir of [runDir, ckptDir(runDir)]) {
    if (!existsSync(dir)) continue;
    for (const e of Deno.readDirSync(dir)) {
      if (/\.tmp(-|$)/.test(e.name)) Deno.removeSync(join(dir, e.name), { recursive: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------

function readPointer(p: string): RunState {
  let s: RunState & { format?: number };
  try {
    s = JSON.parse(Deno.readTextFileSync(p));
  } catch (e) {
    throw new Error(`${p}: unreadable (${(e as Error).message}); start a new run`);
  }
  if (s.format !== FORMAT || typeof s.step !== "number") {
    throw new Error(`${p}: not a checkpoint pointer of this version (format ${s.format})`);
  }
  return { step: s.step, best: s.best, configHash: s.configHash };
}

function writeAtomic(path: string, text: string): void {
  const tmp = tmpName(path);
  Deno.writeTextFileSync(tmp, text);
  Deno.renameSync(tmp, path);
}

/** Link (or, where the file system has no hard links, copy) `src` to `dst`, atomically. */
function linkAtomic(src: string, dst: string): void {
  // rename() of a link onto another link of the same file does nothing and keeps the source.
  if (sameFile(src, dst)) return;
  const tmp = tmpName(dst);
  try {
    Deno.linkSync(src, tmp);
  } catch {
    Deno.copyFileSync(src, tmp);
  }
  Deno.renameSync(tmp, dst);
}

function sameFile(a: string, b: string): boolean {
  if (!existsSync(b)) return false;
  const x = Deno.statSync(a), y = Deno.statSync(b);
  return x.ino !== null && x.ino === y.ino && x.dev === y.dev;
}

function publish(runDir: string, s: RunState, keepIter: boolean): void {
  const last = join(stepDir(runDir, s.step), "model.safetensors");
  linkAtomic(last, join(runDir, "last.safetensors"));
  if (s.best) {
    linkAtomic(
      join(stepDir(runDir, s.best.step), "model.safetensors"),
      join(runDir, "best.safetensors"),
    );
  }
  if (keepIter) linkAtomic(last, join(runDir, `iter_${s.step}.safetensors`));
}

/** Remove step folders the committed state no longer needs (all but last and best). */
function collect(runDir: string, s: RunState): void {
  const keep = new Set([stepName(s.step), ...(s.best ? [stepName(s.best.step)] : [])]);
  for (const e of Deno.readDirSync(ckptDir(runDir))) {
    if (!keep.has(e.name)) Deno.removeSync(join(ckptDir(runDir), e.name), { recursive: true });
  }
}

/** The metadata of a safetensors file, from its header only. */
function headerMetadata(path: string): Record<string, string> {
  const f = Deno.openSync(path);
  try {
    const len = new Uint8Array(8);
    if (f.readSync(len) !== 8) throw new Error("short file");
    const n = Number(new DataView(len.buffer).getBigUint64(0, true));
    const head = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const r = f.readSync(head.subarray(at));
      if (r === null) throw new Error("short header");
      at += r;
    }
    return JSON.parse(new TextDecoder().decode(head)).__metadata__ ?? {};
  } catch (e) {
    throw new Error(`${path}: unreadable checkpoint (${(e as Error).message}); start a new run`);
  } finally {
    f.close();
  }
}

/**
 * Runs saved before the checkpoint set: last.safetensors, last.optim.safetensors, best and a
 * top-level state.json written last. When last's step equals state.json's, the set is whole
 * (state.json was written after the others); it becomes step folders and a pointer.
 */
function migrateLegacy(runDir: string): void {
  const stateFile = join(runDir, "state.json");
  const state = JSON.parse(Deno.readTextFileSync(stateFile)) as RunState;
  const last = join(runDir, "last.safetensors"), optim = join(runDir, "last.optim.safetensors");
  const best = join(runDir, "best.safetensors");
  const lastStep = existsSync(last) ? headerMetadata(last).step : undefined;
  const bestStep = existsSync(best) ? headerMetadata(best).step : undefined;
  const whole = existsSync(optim) && lastStep === String(state.step) &&
    (!state.best || bestStep === String(state.best.step));
  if (!whole) {
    throw new Error(
      `${runDir}: an earlier version stopped this run inside a save (state.json at step ` +
        `${state.step}, last.safetensors at step ${lastStep ?? "none"}, best at ${
          bestStep ?? "none"
        }), so it cannot be resumed exactly; start a new run (--init ${best} keeps the best weights)`,
    );
  }
  const dir = stepDir(runDir, state.step), tmp = tmpName(dir);
  Deno.mkdirSync(tmp, { recursive: true });
  linkAtomic(last, join(tmp, "model.safetensors"));
  linkAtomic(optim, join(tmp, "optim.safetensors"));
  Deno.writeTextFileSync(join(tmp, "state.json"), JSON.stringify(state) + "\n");
  if (existsSync(dir)) Deno.removeSync(dir, { recursive: true });
  Deno.renameSync(tmp, dir);
  if (state.best && state.best.step !== state.step) {
    const b = stepDir(runDir, state.best.step), bt = tmpName(b);
    Deno.mkdirSync(bt, { recursive: true });
    linkAtomic(best, join(bt, "model.safetensors"));
    if (existsSync(b)) Deno.removeSync(b, { recursive: true });
    Deno.renameSync(bt, b);
  }
  writeAtomic(
    join(runDir, POINTER),
    JSON.stringify({ format: FORMAT, migrated: true, ...state }) + "\n",
  );
  Deno.removeSync(stateFile);
  Deno.removeSync(optim);
}
