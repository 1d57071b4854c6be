// The matmul rows of a kernel profile (bench/gpu_train_step.ts --profile, whose labels name each
// product's shape) with the rate each reached and the time it lost against a reference rate:
// which products to plan better first. Only the "by kernel and grid" rows that were printed
// (the 40 largest of each profile) are seen.
//   deno run -A bench/matmul_rates.ts PROFILE.txt [--rate 44.3] [--top 20]
// --rate: TFLOP/s a well-planned product reaches (our f32 matmul at 4096³ on the H100, session 14).

import { parseArgs } from "node:util";

export interface MatmulRow {
  profile: string;
  ms: number;
  calls: number;
  m: number;
  n: number;
  k: number;
  batch: number;
  r: number;
  split: number;
  tile: string;
  grid: string;
}

const ROW =
  /^#\s+([\d.]+) ms\s+(\d+)×\s+matmul \[([\dx]+)\] (\d+)x(\d+)x(\d+) batch=(\d+) R=(\d+) split=(\d+) tile=(\S+)/;

/** Matmul rows of a profile text, each under the profile ("# NAME: … dispatches") it belongs to. */
export function parseMatmulRows(text: string): MatmulRow[] {
  const rows: MatmulRow[] = [];
  let profile = "";
  for (const line of text.split("\n")) {
    const head = /^# (.+): \d+ dispatches/.exec(line);
    if (head) profile = head[1];
    const m = ROW.exec(line);
    if (!m) continue;
    const [ms, calls, grid, mm, n, k, batch, r, split, tile] = m.slice(1);
    rows.push({
      profile,
      ms: Number(ms),
      calls: Number(calls),
      grid,
      m: Number(mm),
      n: Number(n),
      k: Number(k),
      batch: Number(batch),
      r: Number(r),
      split: Number(split),
      tile,
    });
  }
  return rows;
}

/** FLOPs of all calls of a row: 2·M·N·K per product, batch × reduced entries of them. */
export function rowFlops(row: MatmulRow): number {
  return 2 * row.m * row.n * row.k * row.batch * row.r * row.calls;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { rate: { type: "string", default: "44.3" }, top: { type: "string", default: "20" } },
  });
  if (positionals.length !== 1) {
    console.error("usage: deno run -A bench/matmul_rates.ts PROFILE.txt [--rate 44.3] [--top 20]");
    Deno.exit(2);
  }
  const rate = Number(values.rate) * 1e12;
  const rows = parseMatmulRows(Deno.readTextFileSync(positionals[0]));
  const lost = (r: MatmulRow) => r.ms - (1e3 * rowFlops(r)) / rate;
  console.log(
    `| profile | product M×N×K | batch × R | split | tile | calls | ms | TFLOP/s | ms lost at ${values.rate} |`,
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows.sort((a, b) => lost(b) - lost(a)).slice(0, Number(values.top))) {
    const tf = rowFlops(r) / (r.ms * 1e-3) / 1e12;
    console.log(
      `| ${r.profile} | ${r.m}×${r.n}×${r.k} | ${r.batch} × ${r.r} | ${r.split} | ${r.tile} | ` +
        `${r.calls} | ${r.ms.toFixed(3)} | ${tf.toFixed(1)} | ${lost(r).toFixed(3)} |`,
    );
  }
  console.log("\n| profile | matmul rows | ms | ms lost |\n| --- | --- | --- | --- |");
  for (const p of [...new Set(rows.map((r) => r.profile))]) {
    const mine = rows.filter((r) => r.profile === p);
    const ms = mine.reduce((s, r) => s + r.ms, 0), gone = mine.reduce((s, r) => s + lost(r), 0);
    console.log(`| ${p} | ${mine.length} | ${ms.toFixed(1)} | ${gone.toFixed(1)} |`);
  }
}
