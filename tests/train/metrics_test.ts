import {
  carGroups,
  classScores,
  type Confusion,
  ConfusionLog,
  countsFromArray,
  evaluate,
  imageScores,
  scoresOf,
} from "../../train/metrics.ts";
import { assertClose, rng } from "../util.ts";

const close = (a: number, b: number, what: string) => assertClose([a], [b], { what, atol: 1e-12 });

Deno.test("scores of both classes from hand-counted confusion", () => {
  const s = scoresOf({ tp: 30, fp: 10, tn: 50, fn: 10 });
  close(s.changed.iou, 30 / 50, "IoU1");
  close(s.changed.precision, 0.75, "P1");
  close(s.changed.recall, 0.75, "R1");
  close(s.changed.fscore, 0.75, "F1");
  // Class 0: its TP is TN = 50, its FP is FN = 10, its FN is FP = 10.
  close(s.unchanged.iou, 50 / 70, "IoU0");
  close(s.unchanged.precision, 50 / 60, "P0");
  close(s.unchanged.recall, 50 / 60, "R0");
  close(s.unchanged.fscore, 100 / 120, "F0");
  close(s.mIoU, (0.6 + 50 / 70) / 2, "mIoU");
  close(s.mAcc, (0.75 + 50 / 60) / 2, "mAcc");
  close(s.mPrecision, (0.75 + 50 / 60) / 2, "mPrecision");
  close(s.mFscore, (0.75 + 100 / 120) / 2, "mFscore");
});

Deno.test("empty-denominator rule: an absent class scores 1, a missed or invented one 0", () => {
  // No change in the label and none predicted: both classes perfect.
  const quiet = scoresOf({ tp: 0, fp: 0, tn: 100, fn: 0 });
  for (const v of Object.values(quiet.changed)) close(v, 1, "absent class");
  close(quiet.mIoU, 1, "mIoU");
  close(quiet.mFscore, 1, "mFscore");
  // Change present, nothing predicted: precision 0 (no predicted positives), recall 0, F 0.
  const missed = scoresOf({ tp: 0, fp: 0, tn: 90, fn: 10 });
  for (const v of Object.values(missed.changed)) close(v, 0, "missed class");
  close(missed.unchanged.iou, 0.9, "IoU0");
  close(missed.unchanged.recall, 1, "R0");
  close(missed.unchanged.fscore, 180 / 190, "F0");
  // Change predicted where the label has none: recall has an empty denominator but FP > 0: 0.
  const invented = classScores(0, 5, 0);
  for (const v of Object.values(invented)) close(v, 0, "invented class");
  // Everything changed and found: class 0 absent from both, so it scores 1 too.
  close(scoresOf({ tp: 7, fp: 0, tn: 0, fn: 0 }).mIoU, 1, "all changed");
});

Deno.test("F-score equals 2PR/(P+R) wherever that is defined", () => {
  const r = rng(1);
  for (let i = 0; i < 200; i++) {
    const [tp, fp, fn] = [0, 0, 0].map(() => Math.floor(r() * 5));
    const s = classScores(tp, fp, fn);
    if (s.precision + s.recall > 0 && tp + fp + fn > 0) {
      close(s.fscore, (2 * s.precision * s.recall) / (s.precision + s.recall), "F");
    }
  }
});

/** Counts straight from masks, for an independent check of IoU = |A∩B| / |A∪B|. */
function masks(n: number, seed: number, car: number) {
  const r = rng(seed);
  const label = Array.from({ length: n }, () => (r() < 0.05 ? 255 : r() < car ? 1 : 0));
  const pred = label.map((y) => (r() < 0.2 ? (y === 1 ? 0 : 1) : y === 255 ? 0 : y));
  return { label, pred };
}

Deno.test("per-image means, pooled counts and CAR quintiles on random masks", () => {
  const counts: Confusion[] = [];
  const ious: number[] = [];
  for (let i = 0; i < 23; i++) {
    const { label, pred } = masks(400, i, (i + 0.5) / 23);
    const c = { tp: 0, fp: 0, tn: 0, fn: 0 };
    let inter = 0, union = 0;
    for (let p = 0; p < label.length; p++) {
      if (label[p] === 255) continue;
      if (pred[p] && label[p]) c.tp++;
      else if (pred[p]) c.fp++;
      else if (label[p]) c.fn++;
      else c.tn++;
      if (pred[p] && label[p]) inter++;
      if (pred[p] || label[p]) union++;
    }
    counts.push(c);
    ious.push(union ? inter / union : 1);
  }
  const rep = evaluate(counts);
  if (rep.images !== 23 || rep.skipped !== 0) throw new Error(`images ${rep.images}`);
  close(rep.perImage.changed.iou, ious.reduce((a, b) => a + b) / 23, "mean IoU1");
  const per = counts.map(imageScores);
  close(rep.perImage.mIoU, per.reduce((s, x) => s + x.mIoU, 0) / 23, "mIoU");
  // Pooled: the counts summed, then one set of scores.
  const tot = counts.reduce((a, c) => ({
    tp: a.tp + c.tp,
    fp: a.fp + c.fp,
    tn: a.tn + c.tn,
    fn: a.fn + c.fn,
  }));
  close(rep.pooled.changed.iou, tot.tp / (tot.tp + tot.fp + tot.fn), "pooled IoU1");
  // 23 images in 5 groups: sizes 4, 5, 4, 5, 5, ascending CAR, no image lost.
  const sizes = rep.carQuintiles.map((g) => g.images);
  if (sizes.join() !== "4,5,4,5,5") throw new Error(`quintile sizes ${sizes}`);
  for (let q = 1; q < 5; q++) {
    if (rep.carQuintiles[q].carMin < rep.carQuintiles[q - 1].carMax) {
      throw new Error("quintiles not in CAR order");
    }
  }
  const sorted = [...per].sort((a, b) => a.car - b.car);
  close(rep.carQuintiles[0].mIoU!, sorted.slice(0, 4).reduce((s, x) => s + x.mIoU, 0) / 4, "q0");
  close(rep.carQuintiles[0].carMin, sorted[0].car, "carMin");
});

Deno.test("images with every pixel ignored are left out; fewer images than quintiles", () => {
  const log = new ConfusionLog();
  log.add(new Uint32Array([3, 1, 10, 2, 0, 0, 0, 0]));
  log.add([0, 0, 16, 0]);
  const rep = log.report();
  if (rep.images !== 2 || rep.skipped !== 1) throw new Error(`images ${rep.images}`);
  const first = scoresOf({ tp: 3, fp: 1, tn: 10, fn: 2 });
  close(rep.perImage.mIoU, (first.mIoU + 1) / 2, "mIoU over the two valid images");
  const groups = carGroups([imageScores({ tp: 1, fp: 0, tn: 3, fn: 0 })]);
  if (groups.filter((g) => g.mIoU === null).length !== 4) throw new Error("empty groups");
  close(countsFromArray([1, 2, 3, 4])[0].fn, 4, "fn");
});
