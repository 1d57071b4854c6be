// The experiment report: the paper's Table III (Original / O-P / MTKD × mIoU, mAcc, mPrecision,
// mFscore), Table IV (per-class deltas against the original), Fig. 8 (mIoU per CAR quintile) as
// SVG, the CAR histogram (Fig. 5), overlays across CAR (Fig. 7) with a column per strategy, all in
// one self-contained report.html plus results.json. A run too small for its comparison to mean
// anything (the CPU demo) gets a banner saying so.

import { join } from "node:path";
import { encodeBase64 } from "./base64.ts";
import type { ClassScores, MetricsReport } from "./metrics.ts";
import { metricsSummary } from "./report_table.ts";
import { type CrossTable, crossTableRows } from "./cross_table.ts";

export interface StrategyResult {
  name: string;
  report: MetricsReport;
}

export interface OverlayRow {
  name: string;
  car: number;
  /** PNG bytes by column title (A, B, label, Original, MTKD, ...). */
  images: [string, Uint8Array][];
}

/** op --teachers auto's choice of the teacher count (DIR/auto.json, the report's section). */
export interface AutoChoice {
  criterion: string;
  candidates: {
    teachers: number;
    thresholds: number[];
    /** Training pairs per partition. */
    pairs: number[];
    /** The routed ensemble's validation mIoU in [0, 1] (null: this K could not be made). */
    valMIoU: number | null;
    dir: string | null;
    note?: string;
  }[];
  chosen: number;
}

export interface MethodReport {
  title: string;
  model: string;
  dataset: string;
  notes: string[];
  strategies: StrategyResult[];
  /** How the O-P teachers started (op --teacher-init), from their own config.json. */
  teacherInit?: "scratch" | "original" | "mixed";
  routing?: {
    accuracy: number;
    names: string[];
    confusion: number[][];
    /** mIoU of O-P routed by M_O's predicted CAR, and by ground-truth CAR (the upper bound). */
    predictedMIoU?: number;
    oracleMIoU?: number;
    /** Soft routing: the margin, and how many of the `tested` images it averaged. */
    soft?: { margin: number; images: number; tested: number };
  };
  /** Each member on each partition's validation images. */
  cross?: CrossTable;
  /** op --teachers auto: every K tried, its validation score, and the one chosen. */
  auto?: AutoChoice;
  lambdas?: { lambda: number; bestValMIoU: number }[];
  chosenLambda?: number;
  overlays: OverlayRow[];
  /** The run's scale, for the small-budget banner (the test size also comes from the metrics). */
  scale?: { iters: number; size: number; testPairs?: number };
}

/** Below these the comparison of strategies is noise (the paper: 20k+ iterations at 512², 1,000+
 * test pairs); the banner says so at the top of the page, in results.json and on the console. */
export const MEANINGFUL = { iters: 1000, size: 128, testPairs: 50 };

/** Why this run's comparison does not mean much, or null when its scale is reasonable. */
export function smallRunWarning(r: MethodReport): string | null {
  const test = r.scale?.testPairs ?? r.strategies[0]?.report.images ?? 0;
  const why: string[] = [];
  if (r.scale && r.scale.iters < MEANINGFUL.iters) {
    why.push(`each member trained only ${r.scale.iters} iterations`);
  }
  if (r.scale && r.scale.size < MEANINGFUL.size) why.push(`on ${r.scale.size}-px images`);
  if (test < MEANINGFUL.testPairs) why.push(`the test split has only ${test} pairs`);
  if (!why.length) return null;
  return `Too small to compare strategies: ${why.join(", ")}. Differences between Original, ` +
    "O-P and MTKD here are noise; this run shows that the pipeline works, not which strategy " +
    `wins. For a meaningful comparison use at least ${MEANINGFUL.iters} iterations, ` +
    `${MEANINGFUL.size}-px images and ${MEANINGFUL.testPairs} test pairs (the paper: 20,000+ ` +
    "iterations at 512²), e.g. deno task demo --pairs 5000 --size 512 --iters 20000 on a GPU.";
}

const pct = (v: number) => (v * 100).toFixed(2);
const METRICS = ["mIoU", "mAcc", "mPrecision", "mFscore"] as const;
const CLASS_KEYS: [keyof ClassScores, string][] = [
  ["iou", "IoU"],
  ["recall", "Acc"],
  ["precision", "Precision"],
  ["fscore", "Fscore"],
];

export function tableIII(r: MethodReport): string[][] {
  return [
    ["Strategy", ...METRICS],
    ...r.strategies.map((s) => [s.name, ...METRICS.map((m) => pct(s.report.perImage[m]))]),
  ];
}

/** Per-class deltas (percentage points) of each strategy against the first (Original). */
export function tableIV(r: MethodReport): string[][] {
  const base = r.strategies[0].report.perImage;
  const head = ["Strategy", "Class", ...CLASS_KEYS.map(([, t]) => `Δ${t}`)];
  const rows: string[][] = [];
  for (const s of r.strategies.slice(1)) {
    for (const cls of ["unchanged", "changed"] as const) {
      rows.push([
        s.name,
        cls,
        ...CLASS_KEYS.map(([k]) => {
          const d = (s.report.perImage[cls][k] - base[cls][k]) * 100;
          return (d >= 0 ? "+" : "") + d.toFixed(2);
        }),
      ]);
    }
  }
  return [head, ...rows];
}

/** Fig. 8: one polyline per strategy over the 5 CAR quintiles. */
export function quintileSvg(r: MethodReport): string {
  const w = 560, h = 320, ml = 56, mr = 130, mt = 20, mb = 48;
  const pw = w - ml - mr, ph = h - mt - mb;
  const vals = r.strategies.flatMap((s) => s.report.carQuintiles.map((q) => q.mIoU ?? NaN))
    .filter(Number.isFinite);
  const lo = Math.max(0, Math.floor((Math.min(...vals) * 100 - 2) / 5) * 5);
  const hi = Math.min(100, Math.ceil((Math.max(...vals) * 100 + 2) / 5) * 5);
  const x = (i: number) => ml + (pw * (i + 0.5)) / 5;
  const y = (v: number) => mt + ph * (1 - (v * 100 - lo) / Math.max(1e-9, hi - lo));
  const colors = ["#444", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<rect x="${ml}" y="${mt}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  ];
  for (let t = lo; t <= hi; t += 5) {
    const yy = mt + ph * (1 - (t - lo) / Math.max(1e-9, hi - lo));
    parts.push(`<line x1="${ml}" x2="${ml + pw}" y1="${yy}" y2="${yy}" stroke="#eee"/>`);
    parts.push(`<text x="${ml - 6}" y="${yy + 4}" text-anchor="end">${t}</text>`);
  }
  const q0 = r.strategies[0].report.carQuintiles;
  q0.forEach((q, i) => {
    const label = q.images ? `${pct(q.carMin)}–${pct(q.carMax)} %` : "–";
    parts.push(`<text x="${x(i)}" y="${mt + ph + 16}" text-anchor="middle">Q${i + 1}</text>`);
    parts.push(
      `<text x="${x(i)}" y="${mt + ph + 30}" text-anchor="middle" font-size="10">${label}</text>`,
    );
  });
  parts.push(
    `<text transform="translate(16 ${
      mt + ph / 2
    }) rotate(-90)" text-anchor="middle">mIoU (%)</text>`,
  );
  r.strategies.forEach((s, k) => {
    const pts = s.report.carQuintiles.map((q, i) => (q.mIoU === null ? null : [x(i), y(q.mIoU)]))
      .filter((p): p is number[] => p !== null);
    const c = colors[k % colors.length];
    parts.push(
      `<polyline fill="none" stroke="${c}" stroke-width="2" points="${
        pts.map((p) => p.join(",")).join(" ")
      }"/>`,
    );
    for (const [px, py] of pts) parts.push(`<circle cx="${px}" cy="${py}" r="3" fill="${c}"/>`);
    parts.push(
      `<line x1="${ml + pw + 12}" x2="${ml + pw + 32}" y1="${mt + 12 + k * 18}" y2="${
        mt + 12 + k * 18
      }" stroke="${c}" stroke-width="2"/>`,
    );
    parts.push(`<text x="${ml + pw + 38}" y="${mt + 16 + k * 18}">${esc(s.name)}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n");
}

function esc(s: string): string {
  return s.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!,
  );
}

function htmlTable(rows: string[][]): string {
  const [head, ...body] = rows;
  return `<table><thead><tr>${head.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>${
    body.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join("")}</tr>`).join("")
  }</tbody></table>`;
}

export function textTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r, i) =>
    r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join("  ") +
    (i === 0 ? "\n" + widths.map((w) => "-".repeat(w)).join("  ") : "")
  ).join("\n");
}

/** results.json: every value in %, each strategy in the schema of `deno task eval --json`
 * (metricsSummary: mIoU, mAcc, mPrecision, mFscore, perClass.changed.IoU, pooled,
 * carQuintiles), so one reader serves both files. */
export function resultsJson(r: MethodReport) {
  return {
    units: "%",
    title: r.title,
    warnings: [smallRunWarning(r)].filter((w) => w !== null),
    model: r.model,
    dataset: r.dataset,
    notes: r.notes,
    teacherInit: r.teacherInit,
    strategies: Object.fromEntries(r.strategies.map((s) => [s.name, metricsSummary(s.report)])),
    routing: r.routing && {
      ...r.routing,
      accuracy: 100 * r.routing.accuracy,
      predictedMIoU: pctOrUndefined(r.routing.predictedMIoU),
      oracleMIoU: pctOrUndefined(r.routing.oracleMIoU),
    },
    cross: r.cross && {
      ...r.cross,
      rows: r.cross.rows.map((row) => ({
        member: row.member,
        cells: row.cells.map((c) => ({
          images: c.images,
          mIoU: c.mIoU === null ? null : 100 * c.mIoU,
          mFscore: c.mFscore === null ? null : 100 * c.mFscore,
        })),
      })),
    },
    auto: r.auto && {
      ...r.auto,
      candidates: r.auto.candidates.map((c) => ({
        ...c,
        valMIoU: c.valMIoU === null ? null : 100 * c.valMIoU,
      })),
    },
    lambdas: r.lambdas,
    chosenLambda: r.chosenLambda,
  };
}

const pctOrUndefined = (v?: number) => (v === undefined ? undefined : 100 * v);

/** Text rows of the automatic choice of K: teachers, thresholds, pairs, validation mIoU. */
export function autoRows(a: AutoChoice): string[][] {
  return [
    ["teachers", "thresholds", "pairs per partition", "val mIoU (routed)", ""],
    ...a.candidates.map((c) => [
      String(c.teachers),
      c.thresholds.join(", ") || "none",
      c.pairs.join(" / "),
      c.valMIoU === null ? "–" : pct(c.valMIoU),
      c.teachers === a.chosen ? "chosen" : (c.note ?? ""),
    ]),
  ];
}

/** The console's closing lines: the banner when the run is too small, and both files. */
export function reportLines(dir: string, r: MethodReport): string[] {
  const warning = smallRunWarning(r);
  return [
    ...(warning ? [`warning: ${warning}`] : []),
    `report: ${join(dir, "report.html")}; results: ${join(dir, "results.json")}`,
  ];
}

/** Write results.json, quintiles.svg and report.html into `dir`. */
export async function writeReport(dir: string, r: MethodReport): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const svg = quintileSvg(r);
  const json = resultsJson(r);
  await Deno.writeTextFile(join(dir, "results.json"), JSON.stringify(json, null, 2) + "\n");
  await Deno.writeTextFile(join(dir, "quintiles.svg"), svg + "\n");
  const routing = r.routing
    ? `<h2>O-P routing</h2><p>Routing accuracy (predicted partition = ground-truth partition): ${
      pct(r.routing.accuracy)
    } %</p>${
      htmlTable([
        ["truth \\ routed", ...r.routing.names],
        ...r.routing.confusion.map((row, i) => [r.routing!.names[i], ...row.map(String)]),
      ])
    }${
      r.routing.oracleMIoU === undefined
        ? ""
        : `<p>mIoU with predicted routing ${
          pct(r.routing.predictedMIoU ?? 0)
        } %, with oracle routing (by ground-truth CAR) ${pct(r.routing.oracleMIoU)} %</p>`
    }${
      r.routing.soft
        ? `<p>Soft routing (margin ${r.routing.soft.margin}): ${r.routing.soft.images} of ${r.routing.soft.tested} test images averaged the two neighbouring teachers</p>`
        : ""
    }`
    : "";
  const cross = r.cross
    ? `<h2>Each member on each partition (${
      esc(r.cross.split)
    } split, by ground-truth CAR; mIoU / mFscore %)</h2>${htmlTable(crossTableRows(r.cross))}`
    : "";
  const auto = r.auto
    ? `<h2>Teacher count chosen from the data</h2><p>${esc(r.auto.criterion)}</p>${
      htmlTable(autoRows(r.auto))
    }`
    : "";
  const lambdas = r.lambdas?.length
    ? `<h2>λ search (validation mIoU)</h2>${
      htmlTable([
        ["λ", "best val mIoU"],
        ...r.lambdas.map((l) => [String(l.lambda), l.bestValMIoU.toFixed(2)]),
      ])
    }<p>Chosen λ = ${r.chosenLambda}</p>`
    : "";
  const overlays = r.overlays.length
    ? `<h2>Test pairs across CAR (misses red, false alarms blue)</h2><table class="ov"><tr><th>pair</th>${
      r.overlays[0].images.map(([t]) => `<th>${esc(t)}</th>`).join("")
    }</tr>${
      r.overlays.map((o) =>
        `<tr><td>${esc(o.name)}<br>CAR ${pct(o.car)} %</td>${
          o.images.map(([, png]) =>
            `<td><img src="data:image/png;base64,${encodeBase64(png)}"></td>`
          )
            .join("")
        }</tr>`
      ).join("")
    }</table>`
    : "";
  const banner = smallRunWarning(r);
  const histogram = await Deno.readTextFile(join(dir, "car_histogram.svg")).catch(() => null);
  const fig5 = histogram
    ? `<h2>CAR of every pair (Fig. 5; partition thresholds marked)</h2>${histogram}`
    : "";
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}
.ov img{width:128px;image-rendering:pixelated}.ov td{text-align:center}
.banner{background:#fff3cd;border:1px solid #e0b000;padding:.8em 1em;font-weight:bold}</style></head><body>
${banner ? `<p class="banner">${esc(banner)}</p>` : ""}<h1>${esc(r.title)}</h1><p>Model <b>${
    esc(r.model)
  }</b> on <code>${esc(r.dataset)}</code>.</p>
<ul>${r.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>
<h2>Results on the test split (Table III; per-image means, %)</h2>${htmlTable(tableIII(r))}
<h2>Per-class change against the original (Table IV; percentage points)</h2>${htmlTable(tableIV(r))}
<h2>mIoU per CAR quintile of the test set (Fig. 8)</h2>${svg}
${fig5}${routing}${cross}${auto}${lambdas}${overlays}</body></html>\n`;
  await Deno.writeTextFile(join(dir, "report.html"), html);
}
