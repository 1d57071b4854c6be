// One member of an O-P / MTKD experiment as a unit of work that can run alone, in its own
// process (a Slurm array task, a Kubernetes indexed pod) or in the single-machine loop: a member
// already finished with the same configuration is a no-op, one trained with another stops the
// call naming what differs, an interrupted one resumes from its last committed checkpoint, and a
// finished one ends with its marker (train/member_marker.ts); a teacher from M_O (--teacher-init
// original) runs only once M_O has finished (train/teacher_init.ts). requireMembers() is the
// check of the commands that use members (O-P routing, distillation) before they load any.

import type { Tensor } from "../engine/tensor.ts";
import type { Batch } from "../data/loader.ts";
import type { CheckedDataset } from "../data/dataset.ts";
import { committedState } from "./checkpoint_set.ts";
import { memberDiff, type MemberRequest } from "./member_check.ts";
import { type MemberMarker, pairsKey, readMarker, writeMarker } from "./member_marker.ts";
import { hasRun, isTrained, memberConfigOf } from "./members.ts";
import { runConfig, runKey, settingDiffs } from "./run_key.ts";
import { requireStart, resolveStart, teacherInitDiff } from "./teacher_init.ts";
import { train } from "./trainer.ts";

export interface MemberRun {
  dataset: CheckedDataset;
  log: (s: string) => void;
  quiet?: boolean;
  /** What the message says to do when the member was trained with other settings. */
  hint: string;
  /** MTKD: the teacher logits of a batch (the member is a student). */
  teacher?: (a: Tensor, b: Tensor, batch: Batch) => Tensor;
}

/** Train (or resume, or reuse) one member and leave its marker; returns the marker. A teacher
 * from M_O (--teacher-init original) stops first, naming the file, when M_O has not finished. */
export async function trainMember(asked: MemberRequest, o: MemberRun): Promise<MemberMarker> {
  const req = await requireStart(asked);
  const diff = await memberDiff(req);
  if (diff) {
    throw new Error(
      `${req.name} (${req.runDir}) was trained with other settings than this call asks for ` +
        `(was → now): ${diff.join(", ")}; ${o.hint}`,
    );
  }
  const already = isTrained(req.runDir, req.cfg.iters);
  if (!already) {
    if (req.trainPairs.length === 0) {
      throw new Error(
        `partition "${req.name}" has no training pairs: use other thresholds (--thresholds) or ` +
          "fewer teachers",
      );
    }
    const resume = hasRun(req.runDir) ? req.runDir : undefined;
    o.log(
      `${req.name}: ${resume ? "resuming" : "training"} on ${req.trainPairs.length} pairs` +
        (req.startFrom && !resume ? ` from M_O's weights (${req.cfg.init})` : "") +
        ` → ${req.runDir}`,
    );
    await train({ ...req.cfg, out: req.runDir, resume }, {
      trainPairs: req.trainPairs,
      dataset: o.dataset,
      label: req.name,
      quiet: o.quiet,
      distill: req.lambda !== undefined && o.teacher
        ? { lambda: req.lambda, teacher: o.teacher, kdMargin: req.kdMargin }
        : undefined,
    });
  }
  const marker = readMarker(req.runDir);
  if (already && marker) {
    o.log(`${req.name}: finished already with this configuration (${req.runDir}): reusing it`);
    return marker;
  }
  const state = committedState(req.runDir)!;
  writeMarker(req.runDir, {
    member: req.name,
    model: req.cfg.model,
    configHash: state.configHash ?? await keyOf(req),
    pairsHash: await pairsKey(req.trainPairs, req.valPairs),
    step: state.step,
    best: state.best,
  });
  if (already) o.log(`${req.name}: finished already (${req.runDir}): marker written`);
  return readMarker(req.runDir)!;
}

const keyOf = (req: MemberRequest) => runKey({ ...req, cfg: runConfig(req.cfg, req.trainPairs) });

export interface RequiredMember {
  req: MemberRequest;
  /** The command that trains it (named in the message when it is missing). */
  fix: string;
}

/**
 * Check that every member a command needs has finished with what is asked now, before any is
 * loaded; one error names each missing or different member and how to get it. `compare`:
 * "config" checks the whole run key (op knows every member's settings); "data" checks the model
 * and the pairs only (distill knows the student's budget, not the members').
 */
export async function requireMembers(
  members: RequiredMember[],
  compare: "config" | "data",
  hint: string,
): Promise<void> {
  const missing: string[] = [], differ: string[] = [];
  for (const { req, fix } of members) {
    const marker = readMarker(req.runDir);
    if (!marker) {
      const why = hasRun(req.runDir)
        ? "not finished (no member.json: interrupted, failed or still running)"
        : "not trained";
      missing.push(`  ${req.name} (${req.runDir}): ${why}; run: ${fix}`);
      continue;
    }
    if (compare === "config") {
      const start = await resolveStart(req);
      if (!("req" in start)) {
        missing.push(`  ${req.name} (${req.runDir}): starts from M_O's weights, but ${start.why}`);
        continue;
      }
      if (marker.configHash === await keyOf(start.req)) continue;
      const was = memberConfigOf(req.runDir) ?? {};
      const d = [
        ...teacherInitDiff(was, req),
        ...settingDiffs(was, runConfig(start.req.cfg, req.trainPairs)),
      ];
      differ.push(
        `  ${req.name} (${req.runDir}): ${
          d.length ? d.join(", ") : "its training pairs, validation pairs or starting weights"
        }`,
      );
    } else if (marker.model !== req.cfg.model) {
      differ.push(`  ${req.name} (${req.runDir}): model ${marker.model} → ${req.cfg.model}`);
    } else if (marker.pairsHash !== await pairsKey(req.trainPairs, req.valPairs)) {
      differ.push(
        `  ${req.name} (${req.runDir}): its training or validation pairs (other data, or another ` +
          "partition scheme: --teachers / --thresholds)",
      );
    }
  }
  const parts = [
    missing.length ? `members missing:\n${missing.join("\n")}` : "",
    differ.length ? `members trained with other settings (was → now):\n${differ.join("\n")}` : "",
  ].filter((s) => s);
  if (parts.length) {
    throw new Error(
      `${parts.join("\n")}${differ.length ? `\n${hint}` : ""}`,
    );
  }
}
