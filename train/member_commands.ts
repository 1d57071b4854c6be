// One member of an experiment per process (a cluster array task): deno task op --member K trains
// O-P member K (0 = M_O, 1..P = the teachers), deno task distill --lambda-index K the student of
// the K-th λ; each checks the dataset as the whole commands do, a teacher from M_O
// (--teacher-init original) first checks that M_O has finished, and a student that every O-P
// member it needs has.

import { schemeFor, type SchemeSpec } from "../data/partition_auto.ts";
import type { TrainConfig } from "./config.ts";
import { trainStudents } from "./distill.ts";
import { checkedDataset } from "./experiment.ts";
import { markerPath } from "./member_marker.ts";
import { memberIndexHelp, opRequests, opRequired } from "./member_requests.ts";
import { requireMembers, trainMember } from "./member_unit.ts";
import { MEMBER_HINT, writeOpManifest } from "./op.ts";
import { checkTeacherInit, requireStart, type TeacherInit } from "./teacher_init.ts";

/** One O-P member alone (deno task op --member K): 0 = M_O, 1..P = the teachers. */
export async function runOpMember(
  cfg: TrainConfig,
  dir: string,
  spec: SchemeSpec,
  k: number,
  log = console.error,
  teacherInit: TeacherInit = "scratch",
) {
  const ds = await checkedDataset(cfg, log);
  const scheme = schemeFor(spec, ds.train);
  const requests = opRequests(cfg, ds, scheme, dir, teacherInit);
  if (k >= requests.length) {
    throw new Error(
      `--member ${k}: this O-P has members 0..${requests.length - 1} (${memberIndexHelp(scheme)})`,
    );
  }
  // A teacher from M_O stops before anything is written when M_O has not finished.
  const req = await requireStart(requests[k]);
  await writeOpManifest(ds, scheme, dir, teacherInit);
  const m = await trainMember(req, { dataset: ds, log, hint: MEMBER_HINT });
  log(
    `member ${k} (${requests[k].name}): step ${m.step}, best validation mIoU ` +
      `${(m.best?.mIoU ?? 0).toFixed(2)}; marker ${markerPath(requests[k].runDir)}`,
  );
  return m;
}

/** One MTKD student alone (deno task distill --lambda-index K): the K-th λ asked for. */
export async function runStudentMember(
  cfg: TrainConfig,
  from: string,
  spec: SchemeSpec,
  lambdas: number[],
  k: number,
  log = console.error,
  kdMargin = 0,
  teacherInit?: TeacherInit,
) {
  if (k >= lambdas.length) {
    throw new Error(
      `--lambda-index ${k}: this call asks for ${lambdas.length} λ (${lambdas.join(", ")}), ` +
        `indices 0..${lambdas.length - 1}`,
    );
  }
  const ds = await checkedDataset(cfg, log);
  const scheme = schemeFor(spec, ds.train);
  if (teacherInit) checkTeacherInit(from, scheme, teacherInit, true);
  await requireMembers(opRequired(opRequests(cfg, ds, scheme, from)), "data", MEMBER_HINT);
  const [t] = await trainStudents(cfg, ds, scheme, from, [lambdas[k]], log, false, kdMargin);
  log(
    `student λ=${t.lambda}: best validation mIoU ${t.bestValMIoU.toFixed(2)}; ` +
      `marker ${markerPath(t.runDir)}`,
  );
  return t;
}
