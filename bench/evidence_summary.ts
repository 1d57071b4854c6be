// One markdown table from bench/gpu_evidence.sh's experiment folder: per model, partitions
// (fixed / auto) and teacher count, each strategy's test mIoU and mFscore as mean ± std over the
// seeds; then MTKD against the λ = 0 control, seed by seed; then op --teachers auto's choice; then
// M_O's routing confusion (test images, summed over seeds) and the cross table (each member's
// validation mIoU on each partition, mean ± std over seeds), which say where O-P loses; then
// every member's validation curve (mIoU at each validation step, mean ± std over seeds), which
// says whether a budget let M_O stop improving.
//   deno run -A bench/evidence_summary.ts EXP [--margin M] > SUMMARY.md
// "Beyond the seed spread": every seed's paired difference MTKD − control is positive and their
// mean exceeds twice its standard error (sd / √n); with one seed there is no spread to judge.

import { existsSync, realpathSync } from "node:fs";
import { join } from "node:path";

interface Strategy {
  mIoU: number;
  mFscore: number;
}
interface Results {
  strategies: Record<string, Strategy>;
  routing?: { accuracy: number; names: string[]; confusion: number[][] };
  cross?: {
    columns: string[];
    rows: { member: string; cells: { images: number; mIoU: number }[] }[];
  };
  chosenLambda?: number;
}

const [exp, ...rest] = Deno.args;
if (!exp || !existsSync(exp)) {
  console.error(
    `usage: evidence_summary.ts EXP [--margin M] (EXP: the experiment folder; got ${exp})`,
  );
  Deno.exit(2);
}
const margin = rest[0] === "--margin" ? rest[1] : "";

const read = (f: string): Results | null =>
  existsSync(f) ? JSON.parse(Deno.readTextFileSync(f)) : null;
const dirs = (d: string) =>
  existsSync(d)
    ? [...Deno.readDirSync(d)].filter((e) => e.isDirectory).map((e) => e.name).sort()
    : [];

export function meanStd(v: number[]): { mean: number; std: number } {
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  const std = v.length > 1
    ? Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / (v.length - 1))
    : 0;
  return { mean, std };
}
const fmt = (v: number[]) => {
  if (!v.length) return "–";
  const { mean, std } = meanStd(v);
  return v.length > 1 ? `${mean.toFixed(2)} ± ${std.toFixed(2)}` : mean.toFixed(2);
};

/** Per configuration (model, partitions, teachers) and strategy: one value per seed. */
const table = new Map<string, Map<string, { mIoU: number[]; mFscore: number[] }>>();
const pairs = new Map<string, { seed: string; mtkd: number; control: number; lambda?: number }[]>();
const autoRows: string[] = [];
/** Per configuration: routing confusion summed over seeds (rows: true partition). */
const confusion = new Map<string, { names: string[]; m: number[][]; seeds: number }>();
/** Per configuration: member → column → validation mIoU per seed, and images per column. */
const cross = new Map<
  string,
  { columns: string[]; images: number[]; rows: Map<string, number[][]> }
>();
/** Per model and member: validation mIoU per step, one value per seed (M_O counted once per seed:
 * the settings of a seed share it through symlinks). */
const curves = new Map<string, Map<number, number[]>>();
const seenMembers = new Set<string>();
function addCurve(key: string, dir: string): void {
  const log = join(dir, "log.jsonl");
  if (!existsSync(log) || seenMembers.has(realpathSync(dir))) return;
  seenMembers.add(realpathSync(dir));
  const steps = curves.get(key) ?? new Map<number, number[]>();
  curves.set(key, steps);
  for (const line of Deno.readTextFileSync(log).split("\n")) {
    if (!line.includes('"val"')) continue;
    const r = JSON.parse(line) as { type: string; step: number; mIoU: number };
    if (r.type !== "val") continue;
    steps.set(r.step, [...(steps.get(r.step) ?? []), r.mIoU]);
  }
}
for (const model of dirs(exp).filter((d) => d !== "data")) {
  for (const seed of dirs(join(exp, model))) {
    const base = join(exp, model, seed);
    const runs: [string, string, string][] = [];
    // Teachers started from M_O (TEACHER_INIT=original) live in *-mo-init folders.
    const init = (sfx: string | undefined) => sfx ? ", teachers from M_O" : "";
    for (const d of dirs(base)) {
      const m = /^fixed-t(\d)(-mo-init)?$/.exec(d);
      if (m) runs.push([`fixed${init(m[2])}`, m[1], join(base, d)]);
      const a = /^auto(-mo-init)?$/.exec(d);
      if (!a) continue;
      for (const k of dirs(join(base, d))) {
        const m = /^k(\d)$/.exec(k);
        if (m) runs.push([`auto${init(a[1])}`, m[1], join(base, d, k)]);
      }
    }
    for (const [parts, t, dir] of runs) {
      addCurve(`${model} | all | M_O`, join(dir, "original"));
      const members = existsSync(dir)
        ? [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) => e.name).sort()
        : [];
      for (const m of members.filter((m) => /^(teacher|student)_/.test(m))) {
        addCurve(`${model} | ${parts}, ${t} teachers | ${m}`, join(dir, m));
      }
      const distilled = read(join(dir, "results.json"));
      const op = read(join(dir, "op_results.json"));
      if (!distilled && !op) continue;
      const key = `${model} | ${parts} | ${t}`;
      const rows = table.get(key) ?? new Map();
      table.set(key, rows);
      const add = (name: string, s?: Strategy) => {
        if (!s) return;
        const r = rows.get(name) ?? { mIoU: [], mFscore: [] };
        r.mIoU.push(s.mIoU);
        r.mFscore.push(s.mFscore);
        rows.set(name, r);
      };
      const all = { ...op?.strategies, ...distilled?.strategies };
      for (const [name, s] of Object.entries(all)) add(name, s);
      if (op?.routing) add("routing accuracy", { mIoU: op.routing.accuracy, mFscore: NaN });
      if (op?.routing?.confusion) {
        const c = confusion.get(key) ??
          { names: op.routing.names, m: op.routing.confusion.map((r) => r.map(() => 0)), seeds: 0 };
        op.routing.confusion.forEach((r, i) => r.forEach((v, j) => c.m[i][j] += v));
        c.seeds++;
        confusion.set(key, c);
      }
      if (op?.cross) {
        const x = cross.get(key) ?? {
          columns: op.cross.columns,
          images: op.cross.rows[0].cells.map((c) => c.images),
          rows: new Map(),
        };
        for (const r of op.cross.rows) {
          const per = x.rows.get(r.member) ?? r.cells.map(() => []);
          r.cells.forEach((c, j) => per[j].push(c.mIoU));
          x.rows.set(r.member, per);
        }
        cross.set(key, x);
      }
      const mtkd = distilled?.strategies["MTKD"], control = distilled?.strategies["λ = 0 control"];
      if (mtkd && control) {
        const list = pairs.get(key) ?? [];
        list.push({
          seed,
          mtkd: mtkd.mIoU,
          control: control.mIoU,
          lambda: distilled!.chosenLambda,
        });
        pairs.set(key, list);
      }
    }
    for (const [dir, label] of [["auto", seed], ["auto-mo-init", `${seed}, from M_O`]]) {
      const auto = join(base, dir, "auto.json");
      if (!existsSync(auto)) continue;
      const a = JSON.parse(Deno.readTextFileSync(auto));
      const per = a.candidates.map((c: { teachers: number; valMIoU: number | null }) =>
        `K=${c.teachers}: ${c.valMIoU === null ? "–" : (100 * c.valMIoU).toFixed(2)}`
      ).join(", ");
      autoRows.push(`| ${model} | ${label} | ${a.chosen} | ${per} |`);
    }
  }
}

const out: string[] = [
  "# Issue 21: O-P and MTKD with controls (bench/gpu_evidence.sh)",
  "",
  `Test split, per-image means in %, mean ± std over seeds (n = seeds found). "O-P" routes by ` +
  "M_O's predicted CAR (hard)" + (margin
    ? `, "O-P soft routing (margin ${margin})" averages ` +
      "the two neighbouring teachers near a threshold"
    : "") +
  `, "O-P oracle routing" by ground-truth CAR (upper bound); "λ = 0 control" is the MTKD ` +
  "student's schedule from M_O without a teacher. Routing accuracy in % (mFscore column empty).",
  "",
  "| model | partitions | teachers | strategy | n | mIoU | mFscore |",
  "| --- | --- | --- | --- | --- | --- | --- |",
];
for (const [key, rows] of table) {
  for (const [name, v] of rows) {
    const f = v.mFscore.filter(Number.isFinite);
    out.push(`| ${key} | ${name} | ${v.mIoU.length} | ${fmt(v.mIoU)} | ${fmt(f)} |`);
  }
}
out.push(
  "",
  "## MTKD against the λ = 0 control (mIoU, paired by seed)",
  "",
  "Beyond the spread: every seed's difference is positive and the mean difference exceeds twice " +
    "its standard error.",
  "",
  "| model | partitions | teachers | seeds | MTKD − control per seed | mean ± std | beyond the spread |",
  "| --- | --- | --- | --- | --- | --- | --- |",
);
for (const [key, list] of pairs) {
  const d = list.map((p) => p.mtkd - p.control);
  const { mean, std } = meanStd(d);
  const verdict = d.length < 2
    ? "n/a (one seed)"
    : d.every((x) => x > 0) && mean > (2 * std) / Math.sqrt(d.length)
    ? "yes"
    : "no";
  out.push(
    `| ${key} | ${list.length} | ${
      list.map((p) => `${p.seed}: ${(p.mtkd - p.control).toFixed(2)} (λ ${p.lambda})`).join(", ")
    } | ${fmt(d)} | ${verdict} |`,
  );
}
if (autoRows.length) {
  out.push(
    "",
    "## op --teachers auto: K chosen by the routed ensemble's validation mIoU (%)",
    "",
    "| model | seed | chosen K | validation mIoU per K |",
    "| --- | --- | --- | --- |",
    ...autoRows,
  );
}
if (confusion.size) {
  out.push(
    "",
    "## Routing by M_O's predicted CAR: test images, summed over seeds (rows: true partition)",
    "",
  );
  for (const [key, c] of confusion) {
    out.push(
      `${key.replaceAll(" | ", ", ")} teachers (${c.seeds} seed${c.seeds === 1 ? "" : "s"}):`,
      "",
      `| true \\ routed to | ${c.names.join(" | ")} |`,
      `| --- | ${c.names.map(() => "---").join(" | ")} |`,
      ...c.m.map((r, i) => `| ${c.names[i]} | ${r.join(" | ")} |`),
      "",
    );
  }
}
if (cross.size) {
  out.push(
    "## Cross table: each member's validation mIoU (%) on each partition, mean ± std over seeds",
    "",
  );
  for (const [key, x] of cross) {
    out.push(
      `${key.replaceAll(" | ", ", ")} teachers:`,
      "",
      `| member | ${x.columns.map((c, j) => `${c} (${x.images[j]})`).join(" | ")} |`,
      `| --- | ${x.columns.map(() => "---").join(" | ")} |`,
      ...[...x.rows].map(([m, per]) => `| ${m} | ${per.map(fmt).join(" | ")} |`),
      "",
    );
  }
}
if (curves.size) {
  out.push(
    "",
    "## Validation curves: mIoU (%) at each validation step, mean ± std over seeds",
    "",
    "Students are named by λ (student_0 is the λ = 0 control).",
    "",
    "| model | setting | member | n | mIoU by step |",
    "| --- | --- | --- | --- | --- |",
  );
  for (const [key, steps] of curves) {
    const pts = [...steps].sort((a, b) => a[0] - b[0]);
    const n = Math.max(...pts.map(([, v]) => v.length));
    out.push(`| ${key} | ${n} | ${pts.map(([s, v]) => `@${s}: ${fmt(v)}`).join(", ")} |`);
  }
}
console.log(out.join("\n"));
