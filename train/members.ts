// The members of an O-P / MTKD experiment and where they live in the experiment folder:
//   DIR/partition.json         the training set's CAR partition (manifest)
//   DIR/original/              M_O, trained on every training pair
//   DIR/teacher_<name>/        one teacher per partition, trained on its pairs from scratch
//                              (or from M_O's weights: op --teacher-init original)
//   DIR/student_<λ>/           MTKD students (student_<λ>_margin<m>/ with soft targets; λ = 0:
//                              the control, fine-tuned from M_O without a teacher)

import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadCheckpoint } from "../engine/nn/checkpoint.ts";
import { committedState, committedWeights } from "./checkpoint_set.ts";
import { modelEntry } from "../models/registry.ts";
import type { ChangeDetector } from "../models/model.ts";
import type { TrainConfig } from "./config.ts";

export const originalDir = (dir: string) => join(dir, "original");
export const teacherDir = (dir: string, name: string) => join(dir, `teacher_${name}`);
export const studentDir = (dir: string, lambda: number, kdMargin = 0) =>
  join(dir, kdMargin ? `student_${lambda}_margin${kdMargin}` : `student_${lambda}`);
export const manifestPath = (dir: string) => join(dir, "partition.json");

/** A finished member has committed a checkpoint at its last step and has a best one. */
export function isTrained(runDir: string, iters: number): boolean {
  const s = committedState(runDir);
  return s !== null && s.best !== null && s.step >= iters;
}

/** A member folder holds a run that can be resumed (or started again from step 0). */
export const hasRun = (runDir: string) =>
  committedState(runDir) !== null || existsSync(join(runDir, "config.json"));

/** A member's config.json as it trained (null when absent). */
export function memberConfigOf(runDir: string): TrainConfig | null {
  const file = join(runDir, "config.json");
  return existsSync(file) ? JSON.parse(Deno.readTextFileSync(file)) : null;
}

/** Load a member's best checkpoint, in eval mode. */
export function loadMember(model: string, runDir: string): ChangeDetector {
  // The committed file, not the published link (a crash may have cut the publishing short).
  const file = committedWeights(runDir, "best") ?? join(runDir, "best.safetensors");
  if (!existsSync(file)) {
    throw new Error(`${file}: missing; train this member first (deno task op)`);
  }
  const m = modelEntry(model).create(0);
  loadCheckpoint(m, file, { expectModel: model });
  return m.eval();
}
