// Each member's scores on each ground-truth partition's images, its own and the others': why O-P
// can hurt a model. A teacher trained only on small changes may be good on them and poor on
// large ones, so every image that M_O routes to the wrong partition costs what that teacher loses
// outside its own; M_O's row is the baseline each teacher has to beat on its own partition.

import type { PartitionScheme } from "../data/partition.ts";
import { type Confusion, evaluate } from "./metrics.ts";
import type { SplitOutcome } from "./op_eval.ts";

export interface CrossCell {
  images: number;
  /** Per-image means in [0, 1]; null when the partition has no images in this split. */
  mIoU: number | null;
  mFscore: number | null;
}

export interface CrossTable {
  split: string;
  /** Column names: the partitions, then "all". */
  columns: string[];
  rows: { member: string; cells: CrossCell[] }[];
}

/** The cross table of a split's outcome: rows M_O and each teacher, columns the partitions by
 * ground-truth CAR and all images. */
export function crossTable(
  outcome: SplitOutcome,
  scheme: PartitionScheme,
  split: string,
): CrossTable {
  const groups = [
    ...scheme.names.map((_, k) => outcome.routing.filter((r) => r.truth === k)),
    outcome.routing,
  ];
  const cells = (counts: Map<string, Confusion>) =>
    groups.map((g): CrossCell => {
      if (g.length === 0) return { images: 0, mIoU: null, mFscore: null };
      const r = evaluate(g.map((x) => counts.get(x.name)!));
      return { images: g.length, mIoU: r.perImage.mIoU, mFscore: r.perImage.mFscore };
    });
  return {
    split,
    columns: [...scheme.names, "all"],
    rows: [
      { member: "M_O", cells: cells(outcome.counts.original) },
      ...scheme.names.map((n, k) => ({
        member: `teacher ${n}`,
        cells: cells(outcome.counts.teachers[k]),
      })),
    ],
  };
}

/** Text rows "member | small | … | all", each cell "mIoU / mFscore" in % ("–" when empty). */
export function crossTableRows(t: CrossTable): string[][] {
  const pct = (v: number | null) => (v === null ? "–" : (v * 100).toFixed(1));
  const imgs = t.rows[0]?.cells.map((c) => c.images) ?? [];
  return [
    [`${t.split}: mIoU / mFscore`, ...t.columns.map((c, i) => `${c} (${imgs[i]})`)],
    ...t.rows.map((r) => [
      r.member,
      ...r.cells.map((c) => (c.mIoU === null ? "–" : `${pct(c.mIoU)} / ${pct(c.mFscore)}`)),
    ]),
  ];
}
