// Flags shared by partition, op, distill and demo: the CAR partition scheme and the training
// budget of every member (the train command's keys, with the same meaning).

import { z } from "zod";
import {
  customScheme,
  type PartitionScheme,
  THREE_TEACHERS,
  TWO_TEACHERS,
} from "../data/partition.ts";
import { type TrainConfig, TrainConfigSchema } from "../train/config.ts";

export const SchemeFlags = {
  teachers: z.number().int().min(2).max(3).optional(),
  thresholds: z.array(z.number()).optional(),
};

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

export function schemeOf(f: { teachers?: number; thresholds?: number[] }): PartitionScheme {
  if (f.teachers && f.thresholds) {
    throw new Error("give --teachers or --thresholds, not both");
  }
  if (f.thresholds) return customScheme(f.thresholds);
  return f.teachers === 2 ? TWO_TEACHERS : THREE_TEACHERS;
}

/** A full training config for the members from the command's flags. */
export function memberConfig(
  f: Partial<TrainConfig> & { model: string; data: string },
  out: string,
): TrainConfig {
  const given = Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined));
  return TrainConfigSchema.parse({ ...given, out });
}
