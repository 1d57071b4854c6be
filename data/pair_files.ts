// The files of one bi-temporal pair and the name order used everywhere (natural: 2 before 10).

import { join } from "node:path";

/** One pair of a split folder: DIR/A/NAME.png, DIR/B/NAME.png, DIR/label/NAME.png. */
export interface PairFiles {
  /** File name without the .png extension. */
  name: string;
  a: string;
  b: string;
  label: string;
}

/** The actual file names of a pair where they differ from NAME.png (e.g. NAME.PNG). */
export type PairFileNames = Partial<Record<"A" | "B" | "label", string>>;

export function pairFiles(dir: string, name: string, files: PairFileNames = {}): PairFiles {
  const file = `${name}.png`;
  return {
    name,
    a: join(dir, "A", files.A ?? file),
    b: join(dir, "B", files.B ?? file),
    label: join(dir, "label", files.label ?? file),
  };
}

/** Natural order: digit runs compare as numbers, so "2.png" sorts before "10.png". */
export function compareNames(x: string, y: string): number {
  const rx = /(\d+)|(\D+)/g, ry = /(\d+)|(\D+)/g;
  for (;;) {
    const mx = rx.exec(x), my = ry.exec(y);
    if (!mx || !my) return mx ? 1 : my ? -1 : x < y ? -1 : x > y ? 1 : 0;
    const [tx, ty] = [mx[0], my[0]];
    if (mx[1] !== undefined && my[1] !== undefined) {
      const d = Number(tx) - Number(ty);
      if (d !== 0) return d;
      if (tx.length !== ty.length) return tx.length - ty.length; // "007" after "7"
    } else if (tx !== ty) {
      return tx < ty ? -1 : 1;
    }
  }
}
