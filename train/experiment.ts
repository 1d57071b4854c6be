// One experiment of the paper, end to end: partition the training set by CAR, train M_O and the
// teachers (O-P), evaluate O-P on the test split, distil the MTKD student, and write the report.
// Every stage reuses what an earlier call already trained in the same folder, once each member's
// run key shows it was trained with what is asked now (train/member_check.ts); the report's
// notes come from the members' own config.json.

import { join } from "node:path";
import { checkDataset, type CheckedDataset, type PairInfo } from "../data/dataset.ts";
import { encodeGrayPng, encodeRgbPng, readGrayPng, readRgbPng } from "../data/png.ts";
import { binarizeLabel } from "../data/label.ts";
import { writeCarHistogram } from "../data/car_histogram.ts";
import { buildManifest, type PartitionScheme } from "../data/partition.ts";
import { schemeFor, type SchemeSpec } from "../data/partition_auto.ts";
import type { TrainConfig } from "./config.ts";
import { evalWindow } from "./config.ts";
import { runDistill, type StudentResult } from "./distill.ts";
import { crossTableRows } from "./cross_table.ts";
import { checkMembers } from "./member_check.ts";
import { opRequests, opRequired, studentRequests } from "./member_requests.ts";
import { requireMembers } from "./member_unit.ts";
import { loadMember, memberConfigOf, originalDir, teacherDir } from "./members.ts";
import type { MetricsReport } from "./metrics.ts";
import { evaluateOp, type OpResult, runOp } from "./op.ts";
import { checkTeacherInit, type TeacherInit, teacherInitNote } from "./teacher_init.ts";
import { errorOverlay } from "./overlay.ts";
import { maskOf, normalizeImage, predictProbability } from "./predict.ts";
import { checkReporter, datasetSummary } from "./progress.ts";
import {
  type AutoChoice,
  type MethodReport,
  type OverlayRow,
  reportLines,
  type StrategyResult,
  tableIII,
  textTable,
  writeReport,
} from "./report.ts";
import { modelEntry } from "../models/registry.ts";

export async function checkedDataset(cfg: TrainConfig, log: (s: string) => void) {
  const ds = await checkDataset(cfg.data, {
    valCount: cfg.valCount,
    workers: cfg.workers,
    ...checkReporter(cfg.data, log),
  });
  datasetSummary(ds).forEach((l) => log(l));
  // Training skips an empty test/, but O-P and MTKD are evaluated on it.
  if (ds.test.length === 0) {
    throw new Error(
      `${cfg.data}: test/ is missing or empty, and O-P / MTKD are evaluated on the test split: ` +
        "add ROOT/test/{A,B,label}",
    );
  }
  return ds;
}

/** Partition summary lines: count and CAR range per partition. */
export function partitionSummary(ds: CheckedDataset, scheme: PartitionScheme): string[] {
  const m = buildManifest(ds.train, scheme);
  return scheme.names.map((n) => {
    const cars = m.pairs.filter((p) => p.partition === n).map((p) => p.car);
    const range = cars.length
      ? `${(Math.min(...cars) * 100).toFixed(2)}–${(Math.max(...cars) * 100).toFixed(2)} %`
      : "empty";
    return `${n.padEnd(7)} ${String(cars.length).padStart(6)} pairs  CAR ${range}`;
  });
}

export async function writePartitionFiles(
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
) {
  await Deno.mkdir(dir, { recursive: true });
  await writeCarHistogram(join(dir, "car_histogram.svg"), [
    { label: "train", cars: ds.train.map((p) => p.car) },
    { label: "val", cars: ds.val.map((p) => p.car) },
    { label: "test", cars: ds.test.map((p) => p.car) },
  ], { logScale: true, thresholds: scheme.thresholds, title: "CAR distribution (Fig. 5)" });
}

/** Overlays for up to `n` test pairs spread over CAR: A, B, label, original, O-P (the teacher
 * M_O's predicted CAR routes the pair to), MTKD. */
async function overlays(
  model: string,
  studentRun: string,
  test: PairInfo[],
  cfg: TrainConfig,
  dir: string,
  op: { routing: OpResult["routing"]; scheme: PartitionScheme },
  n = 5,
): Promise<OverlayRow[]> {
  const sorted = [...test].sort((a, b) => a.car - b.car);
  const pick = Array.from(
    new Set(
      Array.from(
        { length: Math.min(n, sorted.length) },
        (_, i) => Math.round((i * (sorted.length - 1)) / Math.max(1, n - 1)),
      ),
    ),
  ).map((i) => sorted[i]);
  const norm = modelEntry(model).normalize;
  const routed = new Map(op.routing.map((r) => [r.name, r.routed]));
  const teachers = op.scheme.names.map((t) => loadMember(model, teacherDir(dir, t)));
  const original = loadMember(model, originalDir(dir)),
    mtkd = loadMember(model, studentRun);
  const rows: OverlayRow[] = [];
  try {
    for (const p of pick) {
      const [a, b, l] = await Promise.all([readRgbPng(p.a), readRgbPng(p.b), readGrayPng(p.label)]);
      const label = binarizeLabel(l.data);
      const images: [string, Uint8Array][] = [
        ["A", encodeRgbPng(a)],
        ["B", encodeRgbPng(b)],
        ["label", encodeGrayPng({ ...l, data: label.map((v) => v * 255) })],
      ];
      const members = [
        ["Original", original],
        ["O-P", teachers[routed.get(p.name) ?? 0]],
        ["MTKD", mtkd],
      ] as const;
      for (const [title, m] of members) {
        const window = evalWindow(cfg);
        const prob = await predictProbability(m, {
          width: a.width,
          height: a.height,
          a: normalizeImage(a, norm),
          b: normalizeImage(b, norm),
        }, window);
        const mask = maskOf(prob, window.threshold);
        images.push([title, encodeRgbPng(errorOverlay(b, label, mask))]);
      }
      rows.push({ name: p.name, car: p.car, images });
    }
  } finally {
    for (const m of [original, ...teachers, mtkd]) m.dispose();
  }
  return rows;
}

export interface ExperimentOptions {
  scheme: SchemeSpec;
  /** O-P soft routing and MTKD soft targets within this CAR distance of a threshold. */
  margin?: number;
  lambdas: number[];
  /** Iterations of the MTKD student (the paper: half of M_O's). */
  studentIters: number;
  /** No progress lines from the members' training. */
  quiet?: boolean;
  /** Train again the members trained with other settings (else stop, naming them). */
  retrain?: boolean;
  /** The end of the message when members differ: how this command gets past it. */
  hint?: string;
  /** How the teachers start (default scratch, the paper's; original: from M_O's weights). */
  teacherInit?: TeacherInit;
}

const DEFAULT_HINT = "repeat the flags they were trained with, or choose another --out";

/** Run (or resume) the whole experiment in `dir` and write report.html / results.json there. */
export async function runExperiment(
  cfg: TrainConfig,
  dir: string,
  o: ExperimentOptions,
  log: (s: string) => void = console.error,
): Promise<MethodReport> {
  const ds = await checkedDataset(cfg, log);
  const scheme = schemeFor(o.scheme, ds.train);
  const margin = o.margin ?? 0;
  await writePartitionFiles(ds, scheme, dir);
  for (const line of partitionSummary(ds, scheme)) log(line);
  const check = { retrain: o.retrain ?? false, hint: o.hint ?? DEFAULT_HINT, log };
  const teacherInit = o.teacherInit ?? "scratch";
  // With retrain, teachers of the other init are among the members trained again.
  if (!check.retrain) checkTeacherInit(dir, scheme, teacherInit);
  await checkMembers(opRequests(cfg, ds, scheme, dir, teacherInit), check);
  const op = await runOp(cfg, ds, scheme, dir, log, o.quiet, margin, teacherInit);
  const studentCfg = { ...cfg, iters: o.studentIters };
  // The λ = 0 control: the same student schedule from M_O, without a teacher.
  await checkMembers(studentRequests(studentCfg, ds, dir, [...o.lambdas, 0], margin), check);
  const student = await runDistill(studentCfg, ds, scheme, dir, o.lambdas, log, o.quiet, {
    kdMargin: margin,
    control: true,
  });
  const report = methodReport(cfg, op, scheme, dir, margin, student);
  report.overlays = await overlays(cfg.model, student.chosen.runDir, ds.test, cfg, dir, {
    routing: op.routing,
    scheme,
  });
  await writeReport(dir, report);
  log("\n" + textTable(tableIII(report)) + "\n");
  reportLines(dir, report).forEach((l) => log(l));
  return report;
}

/** O-P only (deno task op): its report has Original and O-P. With `routeOnly` (op --route-only:
 * routing and evaluation of members trained one by one) every member must have finished with
 * these settings, else the call stops naming the missing and the different ones. */
export async function runOpOnly(
  cfg: TrainConfig,
  dir: string,
  spec: SchemeSpec,
  log = console.error,
  o: {
    routeOnly?: boolean;
    margin?: number;
    dataset?: CheckedDataset;
    auto?: AutoChoice;
    teacherInit?: TeacherInit;
  } = {},
) {
  const ds = o.dataset ?? await checkedDataset(cfg, log);
  const scheme = schemeFor(spec, ds.train);
  const margin = o.margin ?? 0;
  const teacherInit = o.teacherInit ?? "scratch";
  checkTeacherInit(dir, scheme, teacherInit);
  await writePartitionFiles(ds, scheme, dir);
  partitionSummary(ds, scheme).forEach((l) => log(l));
  const requests = opRequests(cfg, ds, scheme, dir, teacherInit);
  let op: OpResult;
  if (o.routeOnly) {
    await requireMembers(opRequired(requests), "config", DEFAULT_HINT);
    op = await evaluateOp(cfg.model, ds, scheme, dir, cfg, margin);
  } else {
    await checkMembers(requests, { retrain: false, hint: DEFAULT_HINT, log });
    op = await runOp(cfg, ds, scheme, dir, log, false, margin, teacherInit);
  }
  const report = methodReport(cfg, op, scheme, dir, margin);
  if (o.auto) report.auto = o.auto;
  await writeReport(dir, report);
  log("\n" + textTable(tableIII(report)));
  opLines(op, margin).forEach((l) => log(l));
  reportLines(dir, report).forEach((l) => log(l));
  return { op, report, scheme };
}

/** Console lines on the routing: accuracy, confusion, soft count, oracle, cross table. */
export function opLines(op: OpResult, margin: number): string[] {
  const names = op.manifest.names;
  const lines = [
    `routing accuracy ${(op.routingAccuracy * 100).toFixed(1)} % (test)`,
    textTable([
      ["truth \\ routed", ...names],
      ...op.routingConfusion.map((row, i) => [names[i], ...row.map(String)]),
    ]),
    `mIoU with predicted routing ${(op.op.perImage.mIoU * 100).toFixed(2)} %, with oracle ` +
    `routing (by ground-truth CAR) ${(op.oracle.perImage.mIoU * 100).toFixed(2)} %`,
  ];
  if (margin > 0 && op.soft) {
    lines.push(
      `soft routing (margin ${margin}): ${op.soft.images} of ${op.routing.length} test images ` +
        `averaged over two teachers; mIoU ${(op.soft.report.perImage.mIoU * 100).toFixed(2)} %`,
    );
  }
  if (op.cross) lines.push(textTable(crossTableRows(op.cross)));
  return lines;
}

/** MTKD from an O-P folder (deno task distill). */
export async function runDistillOnly(
  cfg: TrainConfig,
  from: string,
  spec: SchemeSpec,
  lambdas: number[],
  log = console.error,
  o: { margin?: number; control?: boolean; teacherInit?: TeacherInit } = {},
) {
  const ds = await checkedDataset(cfg, log);
  const scheme = schemeFor(spec, ds.train);
  const margin = o.margin ?? 0;
  const hint = DEFAULT_HINT;
  // The teachers' init is what op recorded; a --teacher-init given must agree with it.
  if (o.teacherInit) checkTeacherInit(from, scheme, o.teacherInit, true);
  await requireMembers(opRequired(opRequests(cfg, ds, scheme, from)), "data", hint);
  const asked = o.control ? [...lambdas, 0] : lambdas;
  await checkMembers(studentRequests(cfg, ds, from, asked, margin), {
    retrain: false,
    hint,
    log,
  });
  const student = await runDistill(cfg, ds, scheme, from, lambdas, log, false, {
    kdMargin: margin,
    control: o.control,
  });
  const op = await evaluateOp(cfg.model, ds, scheme, from, cfg, margin);
  const report = methodReport(cfg, op, scheme, from, margin, student);
  report.overlays = await overlays(cfg.model, student.chosen.runDir, ds.test, cfg, from, {
    routing: op.routing,
    scheme,
  });
  await writeReport(from, report);
  log("\n" + textTable(tableIII(report)));
  log(`chosen λ ${student.chosen.lambda}`);
  reportLines(from, report).forEach((l) => log(l));
  return report;
}

/** "24 iterations, batch 4, crop 32, seed 0" from a member's config.json (as it trained). */
function budget(c: TrainConfig): string {
  return `${c.iters} iterations, batch ${c.batch}, crop ${c.size}, seed ${c.seed}`;
}

/** Report notes on the budget, from the members' own configs (the request's when missing). */
function budgetNotes(
  cfg: TrainConfig,
  scheme: PartitionScheme,
  dir: string,
  studentRun?: string,
): string[] {
  const of = (name: string, runDir: string) => {
    const c = memberConfigOf(runDir);
    return { name, line: c ? budget(c) : `${budget(cfg)} (requested; no config.json)` };
  };
  const op = [
    of("M_O", originalDir(dir)),
    ...scheme.names.map((n) => of(`teacher ${n}`, teacherDir(dir, n))),
  ];
  const notes = new Set(op.map((m) => m.line)).size === 1
    ? [`budget: M_O and each teacher ${op[0].line}`]
    : op.map((m) => `budget: ${m.name} ${m.line}`);
  if (studentRun !== undefined) notes.push(`budget: MTKD student ${of("", studentRun).line}`);
  return notes;
}

function methodReport(
  cfg: TrainConfig,
  op: OpResult,
  scheme: PartitionScheme,
  dir: string,
  margin: number,
  students?: {
    chosen: StudentResult;
    all: { lambda: number; bestValMIoU: number }[];
    control: StudentResult | null;
  },
): MethodReport {
  const row = (name: string, report: MetricsReport): StrategyResult => ({ name, report });
  const init = teacherInitNote(dir, scheme);
  const strategies = [
    row("Original", op.original),
    row("O-P", op.op),
    ...(op.soft ? [row(`O-P soft routing (margin ${margin})`, op.soft.report)] : []),
    row("O-P oracle routing", op.oracle),
    ...(students ? [row("MTKD", students.chosen.test)] : []),
    ...(students?.control ? [row("λ = 0 control", students.control.test)] : []),
  ];
  return {
    title: `JL1-CD method: ${cfg.model}`,
    model: cfg.model,
    dataset: cfg.data,
    notes: [
      `${scheme.names.length} teachers, CAR thresholds ${scheme.thresholds.join(", ") || "none"}`,
      init.note,
      ...budgetNotes(cfg, scheme, dir, students?.chosen.runDir),
      "metrics: per-image means over the test split (a class absent from both label and prediction scores 1)",
      "O-P oracle routing: each test image scored by the teacher of its ground-truth CAR (perfect " +
      "routing's upper bound, not a usable strategy)",
      ...(students?.control
        ? [
          "λ = 0 control: the MTKD student's schedule from M_O with CE alone (no teacher), so a " +
          "gain of MTKD over it is the teachers', not the extra training's",
        ]
        : []),
      ...(margin > 0
        ? [
          `soft routing margin ${margin}: ${op.soft?.images ?? 0} test images within it of a ` +
          "threshold averaged the two neighbouring teachers' probabilities" +
          (students ? "; the MTKD student's targets near a threshold averaged their logits" : ""),
        ]
        : []),
    ],
    strategies,
    teacherInit: init.teacherInit,
    routing: {
      accuracy: op.routingAccuracy,
      names: scheme.names,
      confusion: op.routingConfusion,
      oracleMIoU: op.oracle.perImage.mIoU,
      predictedMIoU: op.op.perImage.mIoU,
      soft: op.soft ? { margin, images: op.soft.images, tested: op.routing.length } : undefined,
    },
    cross: op.cross ?? undefined,
    lambdas: students?.all,
    chosenLambda: students?.chosen.lambda,
    overlays: [],
    scale: { iters: cfg.iters, size: cfg.size, testPairs: op.routing.length },
  };
}
