// Terminal progress for long runs: one line with step, it/s, loss and ETA (rewritten in place on
// a terminal, printed every update otherwise), plus notes such as validation results.

export class Progress {
  readonly #t0 = performance.now();
  readonly #tty = Deno.stderr.isTerminal();
  #last = "";
  constructor(
    readonly total: number,
    readonly start: number,
    readonly label: string,
    readonly quiet = false,
  ) {}

  rates(step?: number): { itPerSec: number; elapsedS: number } {
    const elapsedS = (performance.now() - this.#t0) / 1000;
    const done = (step ?? this.start) - this.start;
    return { itPerSec: done > 0 ? done / elapsedS : 0, elapsedS };
  }

  update(step: number, loss: number): void {
    if (this.quiet) return;
    const { itPerSec } = this.rates(step);
    const eta = itPerSec > 0 ? (this.total - step) / itPerSec : 0;
    this.#last = `${this.label} ${step}/${this.total}  ${itPerSec.toFixed(2)} it/s  loss ${
      loss.toFixed(4)
    }  ETA ${fmt(eta)}`;
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

  #write(s: string, newline: boolean): void {
    const enc = new TextEncoder();
    const line = this.#tty ? `\r\x1b[2K${s}${newline ? "\n" : ""}` : `${s}\n`;
    Deno.stderr.writeSync(enc.encode(line));
  }
}

function fmt(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  return m >= 60
    ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
    : `${m}m${String(sec).padStart(2, "0")}s`;
}
