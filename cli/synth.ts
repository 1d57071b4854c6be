// deno run -A cli/synth.ts --out DIR --pairs N --size S --seed K [--val V --test T]
// Writes a procedural JL1-like change-detection benchmark (see data/synth.ts).

import { z } from "zod";
import { writeSynthDataset } from "../data/synth.ts";
import { runCommand } from "./run.ts";

const HELP = `Write a synthetic JL1-like change-detection benchmark.

Usage:
  deno task synth --out DIR [--pairs N] [--size S] [--seed K] [--val V] [--test T]

Writes DIR/{train,val,test}/{A,B,label}/NNNN.png (A: date 1, B: date 2, label: 0/255) and
DIR/synth.json (parameters and CAR summary) and DIR/car_histogram.svg.

Scenes are fields, soil and woodland with the JL1-CD change types between the dates (buildings
built or removed, roads, water bodies, woodland loss, greenhouses, photovoltaic arrays, hardened
surfaces). Nuisance differences are not labelled: illumination, seasonal tint, a 0–2 px
misregistration and sensor noise. CAR is skewed like JL1-CD: ~7 % of pairs unchanged, most
below 5 %, a long tail up to 100 %. The same flags always give the same bytes.

Flags:
  --out DIR        output folder (required)
  --pairs N        pairs over all splits (default 5000)
  --size S         image side in pixels (default 512)
  --seed K         random seed (default 0)
  --val V          validation pairs (default 2 % of N; 0 = no val folder, so training takes the
                   first 100 train pairs as validation)
  --test T         test pairs (default 20 % of N)
  --workers W      parallel workers (default: all cores)
  --overwrite      replace train/, val/, test/ and the summary if DIR already has them
  --quiet          no progress output
  -h, --help       this text
`;

const Flags = z.object({
  out: z.string().min(1),
  pairs: z.number().int().min(1).default(5000),
  size: z.number().int().min(16).max(8192).default(512),
  seed: z.number().int().min(0).default(0),
  val: z.number().int().min(0).optional(),
  test: z.number().int().min(0).optional(),
  workers: z.number().int().min(1).max(256).optional(),
  overwrite: z.boolean().default(false),
  quiet: z.boolean().default(false),
});

function progressPrinter(quiet: boolean) {
  const start = performance.now(), tty = Deno.stderr.isTerminal(), enc = new TextEncoder();
  let lastShown = -1;
  return (done: number, total: number) => {
    if (quiet) return;
    const tenth = Math.floor((10 * done) / total);
    if (!tty && tenth === lastShown && done !== total) return; // logs: one line per 10 %
    lastShown = tenth;
    const s = (performance.now() - start) / 1000, rate = done / Math.max(s, 1e-3);
    const eta = (total - done) / Math.max(rate, 1e-9);
    const line = `synth: ${done}/${total} pairs  ${rate.toFixed(1)} pairs/s  ` +
      `elapsed ${s.toFixed(0)} s  eta ${eta.toFixed(0)} s`;
    Deno.stderr.writeSync(enc.encode(tty ? `\r${line}\x1b[K` : `${line}\n`));
    if (tty && done === total) Deno.stderr.writeSync(enc.encode("\n"));
  };
}

runCommand(import.meta, { help: HELP, flags: Flags, aliases: { o: "out" } }, async (flags) => {
  const summary = await writeSynthDataset({ ...flags, onProgress: progressPrinter(flags.quiet) });
  const all = summary.car.all!;
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  console.log(
    `wrote ${summary.pairs} pairs (train ${summary.splits.train}, val ${summary.splits.val}, ` +
      `test ${summary.splits.test}) of ${summary.size}×${summary.size} to ${flags.out}\n` +
      `CAR: median ${pct(all.median)}, max ${pct(all.max)}, unchanged ${pct(all.zeroShare)}, ` +
      `≤ 5 % ${pct(all.under5Share)}; see ${flags.out}/synth.json`,
  );
});
