// Change-detection metrics from per-image confusion counts (engine/ops/confusion.ts reads back
// TP, FP, TN, FN per image): IoU, precision, recall (= accuracy of the class) and F-score for
// both classes (0 unchanged, 1 changed), their class means (mIoU, mAcc, mPrecision, mFscore),
// averaged over images; the dataset-pooled variant (counts summed first, as MMSegmentation does);
// and mIoU per CAR quintile of the images.
//
// Empty denominators, one rule everywhere (per image and pooled alike):
// - a class absent from both the label and the prediction (TP = FP = FN = 0 for that class) scores
//   1 on IoU, precision, recall and F-score: nothing to find and nothing wrongly found;
// - otherwise a metric whose own denominator is 0 scores 0: precision with no predicted pixel of
//   the class (but some in the label), recall with none in the label (but some predicted);
// - F-score is 2·TP / (2·TP + FP + FN), which equals 2PR / (P + R) and is 0 when TP = 0.
// An image with no valid pixel at all (every label ignored) carries no ground truth: it is left
// out of the per-image means and the CAR quintiles (and adds nothing to the pooled counts).

export interface Confusion {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

export interface ClassScores {
  iou: number;
  precision: number;
  /** Recall, which MMSegmentation and the paper call the class accuracy (Acc). */
  recall: number;
  fscore: number;
}

export interface Scores {
  /** Class 0. */
  unchanged: ClassScores;
  /** Class 1. */
  changed: ClassScores;
  mIoU: number;
  /** Mean recall of the two classes. */
  mAcc: number;
  mPrecision: number;
  mFscore: number;
}

export interface ImageScores extends Scores {
  /** Ground-truth change area ratio: changed pixels / valid pixels. */
  car: number;
  /** Pixels that were not ignored. */
  valid: number;
}

export interface CarGroup {
  /** Smallest and largest ground-truth CAR in the group. */
  carMin: number;
  carMax: number;
  images: number;
  /** Mean of the images' mIoU (null for an empty group: fewer images than groups). */
  mIoU: number | null;
}

export interface MetricsReport {
  /** Images with at least one valid pixel (those the per-image means average over). */
  images: number;
  /** Images without any valid pixel (left out of the means). */
  skipped: number;
  /** Every value averaged over images. */
  perImage: Scores;
  /** Every value from the confusion counts summed over all images. */
  pooled: Scores;
  /** Images sorted by ground-truth CAR and split into 5 groups of equal size (±1). */
  carQuintiles: CarGroup[];
}

/** Split a flat [B·4] array of (TP, FP, TN, FN) rows, as the confusion op returns. */
export function countsFromArray(flat: ArrayLike<number>): Confusion[] {
  if (flat.length % 4 !== 0) throw new Error(`confusion counts: length ${flat.length} not 4·B`);
  const out: Confusion[] = [];
  for (let i = 0; i < flat.length; i += 4) {
    out.push({ tp: flat[i], fp: flat[i + 1], tn: flat[i + 2], fn: flat[i + 3] });
  }
  return out;
}

/** Scores of one class from its own TP, FP, FN (see the rule at the top of the file). */
export function classScores(tp: number, fp: number, fn: number): ClassScores {
  if (tp + fp + fn === 0) return { iou: 1, precision: 1, recall: 1, fscore: 1 };
  return {
    iou: tp / (tp + fp + fn),
    precision: tp + fp > 0 ? tp / (tp + fp) : 0,
    recall: tp + fn > 0 ? tp / (tp + fn) : 0,
    fscore: (2 * tp) / (2 * tp + fp + fn),
  };
}

/** Both classes and their means. For class 0 the roles swap: its TP is TN, its FP is FN. */
export function scoresOf(c: Confusion): Scores {
  const changed = classScores(c.tp, c.fp, c.fn);
  const unchanged = classScores(c.tn, c.fn, c.fp);
  return {
    unchanged,
    changed,
    mIoU: (unchanged.iou + changed.iou) / 2,
    mAcc: (unchanged.recall + changed.recall) / 2,
    mPrecision: (unchanged.precision + changed.precision) / 2,
    mFscore: (unchanged.fscore + changed.fscore) / 2,
  };
}

export function validPixels(c: Confusion): number {
  return c.tp + c.fp + c.tn + c.fn;
}

export function imageScores(c: Confusion): ImageScores {
  const valid = validPixels(c);
  return { ...scoresOf(c), car: valid > 0 ? (c.tp + c.fn) / valid : 0, valid };
}

function meanClass(list: ClassScores[]): ClassScores {
  const m = (k: keyof ClassScores) => list.reduce((s, x) => s + x[k], 0) / list.length;
  return { iou: m("iou"), precision: m("precision"), recall: m("recall"), fscore: m("fscore") };
}

/** The mean of every value over `list` (NaN everywhere when it is empty). */
export function meanScores(list: Scores[]): Scores {
  const m = (k: "mIoU" | "mAcc" | "mPrecision" | "mFscore") =>
    list.reduce((s, x) => s + x[k], 0) / list.length;
  return {
    unchanged: meanClass(list.map((x) => x.unchanged)),
    changed: meanClass(list.map((x) => x.changed)),
    mIoU: m("mIoU"),
    mAcc: m("mAcc"),
    mPrecision: m("mPrecision"),
    mFscore: m("mFscore"),
  };
}

/** Sort by ground-truth CAR (ties keep input order) and split into `groups` groups whose sizes
 * differ by at most one: group q holds sorted images [⌊q·n/groups⌋, ⌊(q+1)·n/groups⌋). */
export function carGroups(images: ImageScores[], groups = 5): CarGroup[] {
  const sorted = images.map((s, i) => ({ s, i })).sort((a, b) => a.s.car - b.s.car || a.i - b.i);
  const n = sorted.length;
  const out: CarGroup[] = [];
  for (let q = 0; q < groups; q++) {
    const part = sorted.slice(Math.floor((q * n) / groups), Math.floor(((q + 1) * n) / groups));
    out.push(
      part.length === 0 ? { carMin: NaN, carMax: NaN, images: 0, mIoU: null } : {
        carMin: part[0].s.car,
        carMax: part[part.length - 1].s.car,
        images: part.length,
        mIoU: part.reduce((s, x) => s + x.s.mIoU, 0) / part.length,
      },
    );
  }
  return out;
}

export function sumCounts(counts: Confusion[]): Confusion {
  const t = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (const c of counts) {
    t.tp += c.tp;
    t.fp += c.fp;
    t.tn += c.tn;
    t.fn += c.fn;
  }
  return t;
}

/** The full report over a dataset's per-image counts. */
export function evaluate(counts: Confusion[]): MetricsReport {
  const images = counts.filter((c) => validPixels(c) > 0).map(imageScores);
  return {
    images: images.length,
    skipped: counts.length - images.length,
    perImage: meanScores(images),
    pooled: scoresOf(sumCounts(counts)),
    carQuintiles: carGroups(images, 5),
  };
}

/** Collects counts batch by batch (each a flat [B·4] read-back) for one evaluation pass. */
export class ConfusionLog {
  readonly counts: Confusion[] = [];

  add(flat: ArrayLike<number>): void {
    this.counts.push(...countsFromArray(flat));
  }

  report(): MetricsReport {
    return evaluate(this.counts);
  }
}
