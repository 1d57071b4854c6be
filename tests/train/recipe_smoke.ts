// Shared by the registry models' training tests: a short run of the real trainer with a model's
// registry recipe on a synthetic dataset (finite losses, a validation, a checkpoint that loads
// back into the registry's model and evaluates).

import assert from "node:assert/strict";
import { join } from "node:path";
import type { CheckedDataset } from "../../data/dataset.ts";
import { loadCheckpoint } from "../../engine/nn/checkpoint.ts";
import type { ChangeDetector } from "../../models/model.ts";
import { modelEntry } from "../../models/registry.ts";
import { type TrainConfig, TrainConfigSchema } from "../../train/config.ts";
import { evaluateModel, type EvaluateOptions } from "../../train/evaluate.ts";
import { train } from "../../train/trainer.ts";

export interface RecipeRun {
  data: string;
  ds: CheckedDataset;
  /** Run folders go below it (ROOT/NAME). */
  root: string;
  iters: number;
  size: number;
  /** Other train settings (a seed). */
  extra?: Record<string, unknown>;
  /** The evaluation window (default: batch 2, one 64² tile). */
  window?: (cfg: TrainConfig) => EvaluateOptions;
  /** More checks of the loaded best checkpoint before it is evaluated. */
  inspect?: (model: ChangeDetector) => Promise<void>;
}

/** Train `name` for `iters` steps at batch 2, validate at the end, load its best checkpoint
 * into a fresh registry model and evaluate it on the test split. */
export async function trainsAndEvaluates(name: string, o: RecipeRun): Promise<void> {
  const out = join(o.root, name);
  const cfg = TrainConfigSchema.parse({
    model: name,
    data: o.data,
    out,
    iters: o.iters,
    batch: 2,
    size: o.size,
    valEvery: o.iters,
    logEvery: 1,
    ...o.extra,
  });
  const res = await train(cfg, { dataset: o.ds, quiet: true });
  assert.equal(res.lastStep, o.iters);
  assert.ok(res.losses.length === o.iters && res.losses.every((l) => Number.isFinite(l.loss)));
  assert.ok(res.best && Number.isFinite(res.best.mIoU), "no validation ran");
  const model = modelEntry(name).create(1);
  loadCheckpoint(model, join(out, "best.safetensors"), { expectModel: name });
  await o.inspect?.(model);
  const window = o.window?.(cfg) ?? { batch: 2, tile: 64, overlap: 0 };
  const { report } = await evaluateModel(model, o.ds.test, window);
  assert.ok(report.perImage.mIoU >= 0 && report.perImage.mIoU <= 1);
  model.dispose();
}
