// The members of an O-P / MTKD experiment and where they live in the experiment folder:
//   DIR/partition.json         the training set's CAR partition (manifest)
//   DIR/original/              M_O, trained on every training pair
//   DIR/teacher_<name>/        one teacher per partition, trained from scratch on its pairs
//   DIR/student_<λ>/           MTKD students

import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadCheckpoint } from "../engine/nn/checkpoint.ts";
import { modelEntry } from "../models/registry.ts";
import type { ChangeDetector } from "../models/model.ts";

export const originalDir = (dir: string) => join(dir, "original");
export const teacherDir = (dir: string, name: string) => join(dir, `teacher_${name}`);
export const studentDir = (dir: string, lambda: number) => join(dir, `student_${lambda}`);
export const manifestPath = (dir: string) => join(dir, "partition.json");

/** A finished member has its best checkpoint and reached its last step. */
export function isTrained(runDir: string, iters: number): boolean {
  const state = join(runDir, "state.json");
  if (!existsSync(join(runDir, "best.safetensors")) || !existsSync(state)) return false;
  return JSON.parse(Deno.readTextFileSync(state)).step >= iters;
}

/** Load a member's best checkpoint, in eval mode. */
export function loadMember(model: string, runDir: string): ChangeDetector {
  const file = join(runDir, "best.safetensors");
  if (!existsSync(file)) {
    throw new Error(`${file}: missing; train this member first (deno task op)`);
  }
  const m = modelEntry(model).create(0);
  loadCheckpoint(m, file, { expectModel: model });
  return m.eval();
}
