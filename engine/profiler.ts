// Counts multiply-accumulates of the compute-heavy ops while enabled (model FLOPs tables), so
// the figures come from the same code that runs, not from a separate hand count. A dry count
// records no dispatch at all: shapes still flow through every op, so a model can be counted at
// its real input size (attention's cost is not linear in the pixel count) in milliseconds.

let counting = false;
let dry = false;
let macs = 0;

/** Run fn and return the multiply-accumulates that conv, transposed conv, matmul and attention
 * ops recorded meanwhile (forward only: call it under noGrad). With `dry`, no kernel is
 * recorded: the tensors fn makes hold no values, so only count. */
export function countMacs(fn: () => void, opts: { dry?: boolean } = {}): number {
  const prev = counting, prevDry = dry, before = macs;
  counting = true;
  dry = prevDry || (opts.dry ?? false);
  try {
    fn();
  } finally {
    counting = prev;
    dry = prevDry;
  }
  const n = macs - before;
  if (!prev) macs = 0;
  return n;
}

export function addMacs(n: number): void {
  if (counting) macs += n;
}

/** Whether dispatches are skipped (inside a dry countMacs). */
export function isDryRun(): boolean {
  return dry;
}
