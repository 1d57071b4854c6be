// Change Area Ratio (CAR) = changed pixels / all pixels of a label, the quantity the O-P strategy
// partitions the training set by.

import { isChanged } from "./label.ts";
import { readGrayPng } from "./png.ts";

/** Number of changed pixels of a raw (0/255 or 0/1) or binarised label. */
export function changedPixels(label: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < label.length; i++) if (isChanged(label[i])) n++;
  return n;
}

/** CAR of a label in [0, 1]; an empty label has CAR 0. */
export function carOf(label: ArrayLike<number>): number {
  return label.length === 0 ? 0 : changedPixels(label) / label.length;
}

/** CAR of a label PNG file. */
export async function carOfFile(path: string): Promise<number> {
  return carOf((await readGrayPng(path)).data);
}
