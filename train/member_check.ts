// Whether the members already in an experiment folder were trained with what is asked now. The
// O-P / MTKD commands reuse trained members; without this check, `deno task demo --seed 5` in a
// folder trained with seed 0 reused every member and then reported "seed 5". Each checkpoint
// carries its run key (train/run_key.ts): a member whose key differs is trained again when the
// caller allows it (--retrain), else the command stops and names each member and setting.

import { existsSync } from "node:fs";
import { join } from "node:path";
import type { PairInfo } from "../data/dataset.ts";
import { committedState } from "./checkpoint_set.ts";
import type { TrainConfig } from "./config.ts";
import { runConfig, runKey, settingDiffs } from "./run_key.ts";
import { resolveStart, type TeacherInit, teacherInitDiff } from "./teacher_init.ts";

export interface MemberRequest {
  name: string;
  runDir: string;
  cfg: TrainConfig;
  trainPairs: PairInfo[];
  valPairs: PairInfo[];
  lambda?: number;
  /** MTKD students: the soft-target margin (0 / absent: each sample's own teacher only). */
  kdMargin?: number;
  /** O-P teachers: how they start (op --teacher-init); absent for M_O and students. */
  teacherInit?: TeacherInit;
  /** A teacher from M_O: M_O's request, whose finished best weights become `cfg.init`
   * (train/teacher_init.ts). */
  startFrom?: MemberRequest;
}

/** What differs between a member's run and the request, or null when it matches (or the
 * folder holds no checkpoint yet: such a run starts again with the request's settings). */
export async function memberDiff(m: MemberRequest): Promise<string[] | null> {
  const state = committedState(m.runDir);
  if (!state) return null;
  const file = join(m.runDir, "config.json");
  const saved = existsSync(file) ? JSON.parse(Deno.readTextFileSync(file)) : {};
  const init = teacherInitDiff(saved, m);
  // A teacher from M_O is what it is only with M_O's finished weights.
  const start = await resolveStart(m);
  if (!("req" in start)) return [...init, `the M_O it starts from: ${start.why}`];
  const cfg = runConfig(start.req.cfg, m.trainPairs);
  const diffs = [...init, ...settingDiffs(saved, cfg)];
  if (state.configHash) {
    const want = await runKey({ ...m, cfg });
    if (want === state.configHash) return null;
    return diffs.length ? diffs : ["its training pairs, validation pairs or starting weights"];
  }
  // A member saved before run keys: its config.json is all there is to compare.
  return diffs.length ? diffs : null;
}

/**
 * Check every member against the request. With `retrain`, a member that differs is removed (so
 * the caller trains it again); otherwise one error names each member and setting that differs.
 */
export async function checkMembers(
  members: MemberRequest[],
  o: { retrain: boolean; hint: string; log: (s: string) => void },
): Promise<void> {
  const bad: string[] = [];
  for (const m of members) {
    const d = await memberDiff(m);
    if (!d) continue;
    if (o.retrain) {
      o.log(`${m.name}: trained with other settings (${d.join(", ")}): training it again`);
      Deno.removeSync(m.runDir, { recursive: true });
    } else bad.push(`  ${m.runDir}: ${d.join(", ")}`);
  }
  if (bad.length) {
    throw new Error(
      `members already in the folder were trained with other settings than this call asks ` +
        `for (was → now):\n${bad.join("\n")}\n${o.hint}`,
    );
  }
}
