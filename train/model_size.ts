// Whether a model can take a training crop: every side it sees must be a multiple of its deepest
// stride (the registry's sizeDivisor), and at least its minSize. Checked when the command starts,
// so `--size 63` is refused in one line naming the sizes that work, not by a broadcast error
// deep in the model after the dataset check. (Inference pads instead: train/predict.ts.)

import { modelEntry } from "../models/registry.ts";

/** Throws a message naming the nearest sizes that work when `size` does not suit `model`. */
export function checkTrainSize(model: string, size: number): void {
  const e = modelEntry(model);
  const d = e.sizeDivisor, min = Math.max(e.minSize ?? d, d);
  if (size % d === 0 && size >= min) return;
  const down = Math.floor(size / d) * d, up = Math.ceil(size / d) * d;
  const options = size < min ? `${min}` : down === up ? `${up}` : `${down} or ${up}`;
  throw new Error(
    `--size ${size}: ${model} needs a crop side that is a multiple of ${d} (its deepest ` +
      `stride)${min > d ? ` and at least ${min}` : ""}; use ${options}`,
  );
}

/** Throws when a training batch is smaller than the model's minBatch (per date: each date's
 * samples are one batch for the backbone's BatchNorm). */
export function checkTrainBatch(model: string, batch: number): void {
  const min = modelEntry(model).minBatch ?? 1;
  if (batch >= min) return;
  throw new Error(
    `--batch ${batch}: ${model} has a BatchNorm that sees one value per image in training, ` +
      `which needs at least ${min} images per batch; use --batch ${min} or more`,
  );
}

/** Throws when an experiment member would train on fewer pairs than the model's minBatch: the
 * trainer's batch is at most the member's pair count, and a one-pair batch fails deep inside a
 * BatchNorm after M_O has already trained. Empty partitions are op's own error. */
export function checkMemberPairs(model: string, member: string, pairs: number): void {
  const min = modelEntry(model).minBatch ?? 1;
  if (pairs === 0 || pairs >= min) return;
  throw new Error(
    `${member}: ${pairs} training pair${pairs === 1 ? "" : "s"}, but ${model} trains on ` +
      `batches of at least ${min} (a BatchNorm sees one value per image); add pairs to that ` +
      "partition, move the thresholds (--thresholds, or --auto --teachers K for equal counts) " +
      "or train fewer teachers",
  );
}
