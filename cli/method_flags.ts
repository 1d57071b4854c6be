// Flags shared by partition, op, distill and demo: the CAR partition scheme, how the teachers
// start, and the training budget of every member (the train command's keys, same meaning).

import { z } from "zod";
import { customScheme, THREE_TEACHERS, TWO_TEACHERS } from "../data/partition.ts";
import { MAX_AUTO_TEACHERS, type SchemeSpec } from "../data/partition_auto.ts";
import { type TrainConfig, TrainConfigSchema } from "../train/config.ts";
import { TEACHER_INITS } from "../train/teacher_init.ts";

export const SchemeFlags = {
  // A string: "2" / "3" (the paper's schemes), 1..4 with --auto, or "auto" (op chooses K).
  teachers: z.string().optional(),
  thresholds: z.array(z.number()).optional(),
  auto: z.boolean().default(false),
};

export const SCHEME_HELP =
  `  --teachers 2|3         the paper's schemes (default 3: CAR 0.05 / 0.2; 2: 0.10)
  --thresholds a,b       custom ascending CAR thresholds
  --auto                 thresholds from the training set: --teachers K (1..${MAX_AUTO_TEACHERS}, default 3)
                         partitions of equal counts`;

/** Routing that knows it is unsure (op, distill, demo). */
export const MarginFlags = {
  routeMargin: z.number().nonnegative().max(1).default(0),
};

export const MARGIN_HELP =
  `  --route-margin M       within M of a CAR threshold (default 0: hard routing) O-P averages the
                         two neighbouring teachers' probabilities (routing by M_O's predicted
                         CAR) and MTKD distils from the mean of their logits (by ground-truth CAR)`;

/** How O-P's teachers start (op, demo; distill checks it against the folder's teachers). */
export const TeacherInitFlags = {
  teacherInit: z.enum(TEACHER_INITS).optional(),
};

export const TEACHER_INIT_HELP = `  --teacher-init scratch|original
                         how each teacher starts: scratch (default) from the model's fresh
                         init, as the paper; original from M_O's trained weights (its best
                         checkpoint), then trained on its partition with the same budget. The
                         teachers then train after M_O (op --member K >= 1 stops, naming
                         original/member.json, until M_O has finished); a folder holds
                         teachers of one init`;

export const BudgetFlags = {
  iters: z.number().int().positive().optional(),
  batch: z.number().int().positive().optional(),
  size: z.number().int().positive().optional(),
  seed: z.number().int().nonnegative().optional(),
  lr: z.number().positive().optional(),
  valEvery: z.number().int().positive().optional(),
  logEvery: z.number().int().positive().optional(),
  valCount: z.number().int().nonnegative().optional(),
  workers: z.number().int().positive().optional(),
  augment: z.boolean().optional(),
};

export const BUDGET_HELP = `  --iters N              iterations per member (default 2000)
  --batch B              pairs per step (default 8)
  --size S               training crop (default 512)
  --seed K               seed (default 0)
  --lr X                 initial LR (default: the model's recipe)
  --val-every N          validate + checkpoint every N steps (default 1000)
  --val-count N          val pairs taken from train when ROOT has no val/ (default 100)
  --no-augment           no augmentation
  --workers W            PNG decode workers`;

/** The one reading of --teachers / --thresholds / --auto for every command. `select`: the
 * command takes --teachers auto (op: choose K by validation). Errors name the flag and the fix. */
export function schemeOf(
  f: { teachers?: string; thresholds?: number[]; auto?: boolean },
  o: { select?: boolean } = {},
): SchemeSpec {
  if (f.teachers !== undefined && f.thresholds) {
    throw new Error("give --teachers or --thresholds, not both");
  }
  if (f.thresholds) {
    if (f.auto) throw new Error("--auto computes the thresholds: leave out --thresholds");
    return customScheme(f.thresholds);
  }
  if (f.teachers === "auto") {
    if (!o.select) {
      throw new Error(
        "--teachers auto: only deno task op chooses the teacher count; here give --auto " +
          "--teachers K (the K op chose, in its auto.json)",
      );
    }
    if (f.auto) throw new Error("--teachers auto already uses equal-count thresholds: drop --auto");
    return { select: "auto" };
  }
  const k = f.teachers === undefined ? 3 : /^\d+$/.test(f.teachers) ? Number(f.teachers) : NaN;
  if (f.auto) {
    if (!(k >= 1 && k <= MAX_AUTO_TEACHERS)) {
      throw new Error(`--teachers ${f.teachers}: with --auto give 1 to ${MAX_AUTO_TEACHERS}`);
    }
    return { equalCount: k };
  }
  if (k !== 2 && k !== 3) {
    throw new Error(
      `--teachers ${f.teachers}: the paper's schemes are 2 or 3` +
        (o.select ? ", or auto" : "") +
        ` (for 1..${MAX_AUTO_TEACHERS} equal-count partitions add --auto; or give --thresholds)`,
    );
  }
  return k === 2 ? TWO_TEACHERS : THREE_TEACHERS;
}

/** A full training config for the members from the command's flags. */
export function memberConfig(
  f: Partial<TrainConfig> & { model: string; data: string },
  out: string,
): TrainConfig {
  const given = Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined));
  return TrainConfigSchema.parse({ ...given, out });
}
