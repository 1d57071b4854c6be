// How an O-P teacher starts (op --teacher-init, recorded in DIR/partition.json): "scratch", the
// paper's way (the model's fresh init), or "original": from M_O's trained weights, the best
// checkpoint of DIR/original (the M_O that routes the test images and that the MTKD student
// starts from), then trained on its partition with the same budget. Such a teacher depends on
// M_O: it resolves only once M_O has finished (its member.json) with the settings this call asks
// for, and its `init` is then M_O's committed best file, whose contents enter its run key
// (train/run_key.ts hashes `init` by content): a teacher from M_O is never taken for, or resumed
// from, a scratch one, nor one started from another M_O. Its config.json records the file.

import { existsSync } from "node:fs";
import { basename } from "node:path";
import { type PartitionScheme, TEACHER_INITS, type TeacherInit } from "../data/partition.ts";
import { committedState, committedWeights, POINTER } from "./checkpoint_set.ts";
import type { TrainConfig } from "./config.ts";
import type { MemberRequest } from "./member_check.ts";
import { markerPath, readMarker } from "./member_marker.ts";
import { memberConfigOf, teacherDir } from "./members.ts";
import { runConfig, runKey } from "./run_key.ts";

export { TEACHER_INITS, type TeacherInit };

/** How a teacher's config.json says it started: with `init` (M_O's weights) or without. */
export const teacherInitOf = (cfg: Partial<TrainConfig> | null): TeacherInit =>
  cfg?.init ? "original" : "scratch";

/** `teacher init was → now` when a teacher's config.json and the request disagree. */
export function teacherInitDiff(saved: Partial<TrainConfig>, req: MemberRequest): string[] {
  if (!req.teacherInit) return [];
  const was = teacherInitOf(saved);
  return was === req.teacherInit ? [] : [`teacher init ${was} → ${req.teacherInit}`];
}

export type Start = { req: MemberRequest } | { why: string; fix: string };

const TRAIN_M_O = "train M_O first: deno task op --member 0 with the flags of this O-P run " +
  "(deno task op without --member, and the cluster jobs of op --emit, train M_O before the " +
  "teachers)";

/** The request as it trains: a teacher from M_O gets `cfg.init` = M_O's committed best weights;
 * otherwise what is missing (M_O not finished, or finished with other settings) and the fix. */
export async function resolveStart(req: MemberRequest): Promise<Start> {
  const from = req.startFrom;
  if (!from) return { req };
  const marker = readMarker(from.runDir);
  if (!marker) {
    return {
      why: `${markerPath(from.runDir)} is missing: M_O has not finished (not trained, ` +
        "interrupted or still running)",
      fix: TRAIN_M_O,
    };
  }
  if (marker.configHash !== await runKey({ ...from, cfg: runConfig(from.cfg, from.trainPairs) })) {
    return {
      why: `M_O (${from.runDir}) was trained with other settings than this call asks for`,
      fix: "deno task op --member 0 with the flags of this O-P run names what differs",
    };
  }
  const weights = committedWeights(from.runDir, "best");
  if (!weights || !existsSync(weights)) {
    return {
      why: `${weights ?? `${from.runDir}/${POINTER}`} is missing: M_O's best checkpoint is gone`,
      fix: `remove ${from.runDir} and ${TRAIN_M_O}`,
    };
  }
  return { req: { ...req, cfg: { ...req.cfg, init: weights } } };
}

/** resolveStart, or an error naming the missing file and the fix. */
export async function requireStart(req: MemberRequest): Promise<MemberRequest> {
  const s = await resolveStart(req);
  if ("req" in s) return s.req;
  throw new Error(
    `${req.name} (${req.runDir}) starts from M_O's weights (--teacher-init original), but ` +
      `${s.why}; ${s.fix}`,
  );
}

/** Refuse a folder holding teachers (of this scheme, with a checkpoint) that started otherwise
 * than `asked`: one folder holds teachers of one init. `reader`: distill, which takes the
 * teachers as they are (the flag is only checked there). */
export function checkTeacherInit(
  dir: string,
  scheme: PartitionScheme,
  asked: TeacherInit,
  reader = false,
): void {
  const other = scheme.names.map((n) => teacherDir(dir, n)).filter((d) =>
    committedState(d) !== null && teacherInitOf(memberConfigOf(d)) !== asked
  );
  if (!other.length) return;
  const was = TEACHER_INITS.find((m) => m !== asked)!;
  throw new Error(
    `${dir} holds teachers trained with --teacher-init ${was} (${
      other.map((d) => basename(d)).join(", ")
    }), and this call asks for --teacher-init ${asked}; ` + (reader
      ? `give --teacher-init ${was} or leave the flag out`
      : `one folder holds teachers of one init: repeat --teacher-init ${was}, or choose ` +
        "another --out"),
  );
}

/** How the teachers in `dir` started, from their own config.json (the report's note). */
export function teacherInitNote(
  dir: string,
  scheme: PartitionScheme,
): { teacherInit: TeacherInit | "mixed"; note: string } {
  const cfgs = scheme.names.map((n) => memberConfigOf(teacherDir(dir, n)));
  const modes = new Set(cfgs.map(teacherInitOf));
  if (modes.size > 1) {
    return {
      teacherInit: "mixed",
      note: "teachers: " +
        scheme.names.map((n, i) =>
          `${n} from ${cfgs[i]?.init ? `M_O's weights (${cfgs[i]!.init})` : "scratch"}`
        ).join(", "),
    };
  }
  const init = cfgs.find((c) => c?.init)?.init;
  return init
    ? {
      teacherInit: "original",
      note: `teachers: started from M_O's weights (${init}), then trained on their partition ` +
        "(--teacher-init original; the paper trains them from scratch)",
    }
    : {
      teacherInit: "scratch",
      note: "teachers: trained from scratch on their partition, as the paper (--teacher-init " +
        "scratch)",
    };
}
