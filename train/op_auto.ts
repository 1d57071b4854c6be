// op --teachers auto: the teacher count chosen from the data. For each K in 1..4 the training
// set is cut into K equal-count CAR partitions, the K teachers are trained (M_O is shared), and
// the routed ensemble is scored on the validation split; the K with the best validation mIoU
// wins (ties: fewer teachers). This is the issue's "minimising validation error of the routed
// ensemble", paid for in training: 1 + 2 + 3 + 4 = 10 teachers beside M_O. K = 1 is one teacher
// on every pair (M_O's recipe and pairs, so it scores what M_O alone would).

import { existsSync } from "node:fs";
import { join } from "node:path";
import type { CheckedDataset } from "../data/dataset.ts";
import { buildManifest, type PartitionScheme } from "../data/partition.ts";
import { equalCountScheme, MAX_AUTO_TEACHERS } from "../data/partition_auto.ts";
import type { TrainConfig } from "./config.ts";
import { runOpOnly, writePartitionFiles } from "./experiment.ts";
import { opRequests } from "./member_requests.ts";
import { trainMember } from "./member_unit.ts";
import { originalDir } from "./members.ts";
import { MEMBER_HINT } from "./op.ts";
import type { TeacherInit } from "./teacher_init.ts";
import { type AutoChoice, autoRows, type MethodReport, textTable, writeReport } from "./report.ts";

export const AUTO_CRITERION = "K equal-count CAR partitions of the training set for K = 1.." +
  `${MAX_AUTO_TEACHERS}; the teachers of each K trained; K chosen by the validation mIoU of ` +
  "the routed ensemble (M_O's predicted CAR picks the teacher; soft routing when a margin is " +
  "given); ties go to fewer teachers";

/** The folder of candidate K inside an auto experiment (a complete O-P folder). */
export const autoDir = (dir: string, k: number) => join(dir, `k${k}`);

/** Choose K, train what it needs, and write DIR/auto.json; the chosen K's report goes to DIR
 * too (each candidate's stays in DIR/kK/). */
export async function runOpAuto(
  cfg: TrainConfig,
  dir: string,
  ds: CheckedDataset,
  log = console.error,
  margin = 0,
  /** The largest K tried (tests use fewer than the 4). */
  maxTeachers = MAX_AUTO_TEACHERS,
  /** How every K's teachers start (original: from the shared M_O's weights). */
  teacherInit: TeacherInit = "scratch",
): Promise<AutoChoice> {
  if (ds.val.length === 0) {
    throw new Error(
      `${cfg.data}: --teachers auto chooses K on the validation split, which is empty: add ` +
        "ROOT/val/ or a --val-count above 0",
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const [original] = opRequests(cfg, ds, { thresholds: [], names: ["all"] }, dir);
  await trainMember(original, { dataset: ds, log, hint: MEMBER_HINT });
  const candidates: AutoChoice["candidates"] = [];
  const reports = new Map<number, { report: MethodReport; scheme: PartitionScheme }>();
  for (let k = 1; k <= maxTeachers; k++) {
    let scheme;
    try {
      scheme = equalCountScheme(ds.train.map((p) => p.car), k);
    } catch (e) {
      log(`K = ${k}: skipped: ${(e as Error).message}`);
      candidates.push({
        teachers: k,
        thresholds: [],
        pairs: [],
        valMIoU: null,
        dir: null,
        note: (e as Error).message,
      });
      continue;
    }
    const sub = autoDir(dir, k);
    await Deno.mkdir(sub, { recursive: true });
    // The candidates share M_O: each folder's original/ links to DIR/original.
    if (!existsSync(originalDir(sub))) await Deno.symlink("../original", originalDir(sub));
    log(`K = ${k}: thresholds ${scheme.thresholds.join(", ") || "none"} → ${sub}`);
    const { op, report } = await runOpOnly(cfg, sub, scheme, log, {
      margin,
      dataset: ds,
      teacherInit,
    });
    reports.set(k, { report, scheme });
    const val = op.val!;
    const score = margin > 0 && val.soft ? val.soft.report : val.op;
    const manifest = buildManifest(ds.train, scheme);
    candidates.push({
      teachers: k,
      thresholds: scheme.thresholds,
      pairs: scheme.names.map((n) => manifest.pairs.filter((p) => p.partition === n).length),
      valMIoU: score.perImage.mIoU,
      dir: sub,
    });
  }
  const scored = candidates.filter((c) => c.valMIoU !== null);
  if (scored.length === 0) throw new Error("--teachers auto: no teacher count could be made");
  const best = scored.reduce((p, c) => (c.valMIoU! > p.valMIoU! ? c : p));
  const choice: AutoChoice = { criterion: AUTO_CRITERION, candidates, chosen: best.teachers };
  await Deno.writeTextFile(join(dir, "auto.json"), JSON.stringify(choice, null, 2) + "\n");
  const chosen = reports.get(best.teachers)!;
  await writePartitionFiles(ds, chosen.scheme, dir);
  await writeReport(dir, { ...chosen.report, auto: choice });
  log("\n" + textTable(autoRows(choice)));
  log(
    `chosen: ${best.teachers} teacher(s), thresholds ${best.thresholds.join(",") || "none"} ` +
      `(${best.dir}); ${join(dir, "auto.json")}, ${join(dir, "report.html")}`,
  );
  return choice;
}
