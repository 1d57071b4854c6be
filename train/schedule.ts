// Learning-rate schedule of the JL1-CD recipe: linear warm-up from 1e-6 to the initial LR, then
// linear decay to 0 (or cosine annealing) over the remaining iterations.

export interface Schedule {
  lr: number;
  iters: number;
  warmup: number;
  kind: "linear" | "cosine";
}

const WARMUP_START = 1e-6;

/** The paper warms up over 1k of 200k iterations; short runs scale that to 10 % (at most 1k). */
export function defaultWarmup(iters: number): number {
  return Math.min(1000, Math.floor(iters / 10));
}

/** LR used at step `step` (0-based). */
export function lrAt(s: Schedule, step: number): number {
  if (step < s.warmup) {
    return WARMUP_START + (s.lr - WARMUP_START) * (step / Math.max(1, s.warmup));
  }
  const rest = Math.max(1, s.iters - s.warmup);
  const t = Math.min(1, (step - s.warmup) / rest);
  return s.kind === "cosine" ? s.lr * 0.5 * (1 + Math.cos(Math.PI * t)) : s.lr * (1 - t);
}
