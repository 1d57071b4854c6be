// Progress of predict and eval on stderr (a command's presentation, so it stays in cli/).

/** "done/total" lines on stderr: rewritten in place on a terminal, one per 10 % in logs. */
export function progressPrinter(what: string, quiet: boolean) {
  const start = performance.now(), tty = Deno.stderr.isTerminal(), enc = new TextEncoder();
  let lastShown = -1;
  return (done: number, total: number) => {
    if (quiet) return;
    const tenth = Math.floor((10 * done) / total);
    if (!tty && tenth === lastShown && done !== total) return;
    lastShown = tenth;
    const s = (performance.now() - start) / 1000;
    const line = `${what}: ${done}/${total} images  elapsed ${s.toFixed(0)} s`;
    Deno.stderr.writeSync(enc.encode(tty ? `\r${line}\x1b[K` : `${line}\n`));
    if (tty && done === total) Deno.stderr.writeSync(enc.encode("\n"));
  };
}
