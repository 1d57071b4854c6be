// Counts multiply-accumulates of the compute-heavy ops while enabled (model FLOPs tables), so
// the figures come from the same code that runs, not from a separate hand count.

let counting = false;
let macs = 0;

/** Run fn and return the multiply-accumulates that conv, transposed conv and matmul ops
 * recorded meanwhile (forward only: call it under noGrad). */
export function countMacs(fn: () => void): number {
  const prev = counting, before = macs;
  counting = true;
  try {
    fn();
  } finally {
    counting = prev;
  }
  const n = macs - before;
  if (!prev) macs = 0;
  return n;
}

export function addMacs(n: number): void {
  if (counting) macs += n;
}
