// A metrics report in the two forms people read: the JSON summary (values in %, the keys of the
// paper's tables: IoU, Acc, Precision, Fscore) and a terminal table rendered from that summary,
// so the printed and the saved numbers are the same.

import type { ClassScores, MetricsReport, Scores } from "./metrics.ts";

export interface ClassPercent {
  IoU: number;
  Acc: number;
  Precision: number;
  Fscore: number;
}

export interface MeansPercent {
  mIoU: number;
  mAcc: number;
  mPrecision: number;
  mFscore: number;
}

export interface QuintilePercent {
  /** Ground-truth CAR range of the group, in % (null for an empty group). */
  carMin: number | null;
  carMax: number | null;
  images: number;
  mIoU: number | null;
}

/** Every metric in %. Top level: per-image means; `pooled`: from counts summed over images. */
export interface MetricsSummary extends MeansPercent {
  /** Images with ground truth (those the per-image means average over). */
  images: number;
  /** Images without any valid label pixel, left out of the means. */
  skipped: number;
  perClass: { unchanged: ClassPercent; changed: ClassPercent };
  pooled: MeansPercent & { perClass: { unchanged: ClassPercent; changed: ClassPercent } };
  /** mIoU per quintile of ground-truth CAR (the paper's Fig. 8). */
  carQuintiles: QuintilePercent[];
}

const pct = (x: number) => 100 * x;
const pctOrNull = (x: number | null) => (x === null || Number.isNaN(x) ? null : 100 * x);

function classPercent(c: ClassScores): ClassPercent {
  return {
    IoU: pct(c.iou),
    Acc: pct(c.recall),
    Precision: pct(c.precision),
    Fscore: pct(c.fscore),
  };
}

function meansPercent(s: Scores): MeansPercent {
  return {
    mIoU: pct(s.mIoU),
    mAcc: pct(s.mAcc),
    mPrecision: pct(s.mPrecision),
    mFscore: pct(s.mFscore),
  };
}

export function metricsSummary(report: MetricsReport): MetricsSummary {
  const perClass = (s: Scores) => ({
    unchanged: classPercent(s.unchanged),
    changed: classPercent(s.changed),
  });
  return {
    images: report.images,
    skipped: report.skipped,
    ...meansPercent(report.perImage),
    perClass: perClass(report.perImage),
    pooled: { ...meansPercent(report.pooled), perClass: perClass(report.pooled) },
    carQuintiles: report.carQuintiles.map((g) => ({
      carMin: pctOrNull(g.carMin),
      carMax: pctOrNull(g.carMax),
      images: g.images,
      mIoU: pctOrNull(g.mIoU),
    })),
  };
}

const num = (x: number | null, digits = 2) =>
  x === null || Number.isNaN(x) ? "–" : x.toFixed(digits);

/** Columns padded to their widest cell; the first left-aligned, the rest right-aligned. */
function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) =>
    r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join("  ")
      .trimEnd();
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)]
    .join("\n");
}

/** The summary as text: means, per-class values, and mIoU per CAR quintile. All in %. */
export function formatMetricsTable(s: MetricsSummary, title?: string): string {
  const means = (label: string, m: MeansPercent) => [
    label,
    num(m.mIoU),
    num(m.mAcc),
    num(m.mPrecision),
    num(m.mFscore),
  ];
  const cls = (label: string, c: ClassPercent, p: ClassPercent) => [
    label,
    num(c.IoU),
    num(c.Acc),
    num(c.Precision),
    num(c.Fscore),
    num(p.IoU),
    num(p.Fscore),
  ];
  const skipped = s.skipped ? `, ${s.skipped} without valid label pixels left out` : "";
  const parts = [
    `${title ? `${title}: ` : ""}${s.images} image${s.images === 1 ? "" : "s"}${skipped} (%)`,
    "",
    table([
      ["", "mIoU", "mAcc", "mPrecision", "mFscore"],
      means("per-image mean", s),
      means("pooled", s.pooled),
    ]),
    "",
    table([
      ["class", "IoU", "Acc", "Precision", "Fscore", "pooled IoU", "pooled Fscore"],
      cls("unchanged", s.perClass.unchanged, s.pooled.perClass.unchanged),
      cls("changed", s.perClass.changed, s.pooled.perClass.changed),
    ]),
    "",
    table([
      ["CAR quintile", "CAR from", "CAR to", "images", "mIoU"],
      ...s.carQuintiles.map((g, q) => [
        String(q + 1),
        num(g.carMin),
        num(g.carMax),
        String(g.images),
        num(g.mIoU),
      ]),
    ]),
  ];
  return parts.join("\n");
}
