// Terminal progress for long runs, from the first second: the dataset check (pairs decoded, then a
// summary with the check's decisions), "compiling kernels" before the first step (which compiles
// every kernel of the model and on 2 cores takes minutes), then one line with step, it/s, loss and
// ETA — rewritten in place after every step on a terminal, printed at each log interval otherwise
// — plus notes such as validation results.

import type { CheckOptions } from "../data/dataset.ts";

/** Fewer validation pairs than this make mIoU too coarse to pick a best checkpoint by. */
export const MIN_VAL_PAIRS = 10;

export class Progress {
  readonly #t0 = performance.now();
  readonly #tty: boolean;
  #last = "";
  #loss: number | null = null;
  #shown = 0;
  #firstStep = true;
  constructor(
    readonly total: number,
    readonly start: number,
    readonly label: string,
    readonly quiet = false,
    tty = Deno.stderr.isTerminal(),
    readonly out: (text: string) => void = (text) =>
      Deno.stderr.writeSync(new TextEncoder().encode(text)),
  ) {
    this.#tty = tty;
  }

  rates(step?: number): { itPerSec: number; elapsedS: number } {
    const elapsedS = (performance.now() - this.#t0) / 1000;
    const done = (step ?? this.start) - this.start;
    return { itPerSec: done > 0 ? done / elapsedS : 0, elapsedS };
  }

  /** Before the first step: say that kernels compile now (the long silent part of a start). */
  begin(): void {
    if (this.quiet || this.start >= this.total) return;
    this.#write(
      `${this.label} compiling kernels and running step ${this.start + 1} ` +
        "(the first step compiles every kernel of the model; the driver caches them)",
      true,
    );
  }

  /** After every step: on a terminal the progress line is rewritten (at most 4 times a second);
   * elsewhere only the first step is reported, then the log interval's update() lines. */
  tick(step: number): void {
    if (this.quiet) return;
    const now = performance.now();
    if (this.#firstStep) {
      this.#firstStep = false;
      this.#write(`${this.label} step ${step} done after ${fmt((now - this.#t0) / 1000)}`, true);
      this.#shown = now;
      return;
    }
    if (!this.#tty || now - this.#shown < 250) return;
    this.#shown = now;
    this.#last = this.#line(step);
    this.#write(this.#last, false);
  }

  update(step: number, loss: number): void {
    if (this.quiet) return;
    this.#loss = loss;
    this.#last = this.#line(step);
    this.#write(this.#last, !this.#tty);
  }

  note(s: string): void {
    if (this.quiet) return;
    this.#write(`${this.label} ${s}`, true);
    if (this.#tty && this.#last) this.#write(this.#last, false);
  }

  done(): void {
    if (!this.quiet && this.#tty) this.#write("", true);
  }

  #line(step: number): string {
    const { itPerSec } = this.rates(step);
    const eta = itPerSec > 0 ? (this.total - step) / itPerSec : 0;
    const loss = this.#loss === null ? "" : `  loss ${this.#loss.toFixed(4)}`;
    return `${this.label} ${step}/${this.total}  ${itPerSec.toFixed(2)} it/s${loss}  ETA ${
      fmt(eta)
    }`;
  }

  #write(s: string, newline: boolean): void {
    this.out(this.#tty ? `\r\x1b[2K${s}${newline ? "\n" : ""}` : `${s}\n`);
  }
}

/**
 * The dataset check's reporting: "checking ROOT" at once, pairs decoded about every 2 s, and the
 * check's notes (an empty split skipped, alpha ignored, 12-bit data scaled).
 */
export function checkReporter(
  root: string,
  say: (s: string) => void,
): Pick<CheckOptions, "onProgress" | "onNote"> {
  say(`checking ${root}: reading every pair once`);
  let shown = performance.now();
  return {
    onProgress: (done, total) => {
      const now = performance.now();
      if (done === total || now - shown >= 2000) {
        shown = now;
        say(`checking ${root}: ${done}/${total} pairs`);
      }
    },
    onNote: (note) => say(`note: ${note}`),
  };
}

/** The check's summary line, and a warning when validation is too small to mean much. */
export function datasetSummary(
  ds: { root: string; train: unknown[]; val: unknown[]; test: unknown[]; valFromTrain: boolean },
): string[] {
  const lines = [
    `dataset ${ds.root}: ${ds.train.length} train, ${ds.val.length} val${
      ds.valFromTrain ? " (the first pairs of train/)" : ""
    }, ${ds.test.length} test pairs; all checked`,
  ];
  if (ds.val.length < MIN_VAL_PAIRS) {
    lines.push(
      `warning: only ${ds.val.length} validation pair${ds.val.length === 1 ? "" : "s"}: ` +
        `validation mIoU moves in large steps and the "best" checkpoint is close to chance; ` +
        `use at least ${MIN_VAL_PAIRS} (more val/ pairs, or --val-count)`,
    );
  }
  return lines;
}

function fmt(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  return m >= 60
    ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
    : `${m}m${String(sec).padStart(2, "0")}s`;
}
