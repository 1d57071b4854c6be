// The members of an experiment as requests (name, folder, configuration, pairs), numbered as the
// per-member commands number them: O-P member 0 is M_O, 1..P the teachers in partition order
// (with --teacher-init original each teacher starts from M_O's weights, so after it);
// student K is the K-th λ asked for.

import type { CheckedDataset, PairInfo } from "../data/dataset.ts";
import { buildManifest, type PartitionScheme } from "../data/partition.ts";
import { committedWeights } from "./checkpoint_set.ts";
import type { TrainConfig } from "./config.ts";
import type { MemberRequest } from "./member_check.ts";
import type { RequiredMember } from "./member_unit.ts";
import { originalDir, studentDir, teacherDir } from "./members.ts";
import { checkMemberPairs } from "./model_size.ts";
import type { TeacherInit } from "./teacher_init.ts";

/** M_O and the teachers: name, run folder, training pairs. */
export function opMembers(
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
): { name: string; runDir: string; pairs: PairInfo[] }[] {
  const manifest = buildManifest(ds.train, scheme);
  return [
    { name: "original", runDir: originalDir(dir), pairs: ds.train },
    ...scheme.names.map((n) => ({
      name: n,
      runDir: teacherDir(dir, n),
      pairs: ds.train.filter((_, i) => manifest.pairs[i].partition === n),
    })),
  ];
}

/** M_O and the teachers as the request would train them; with `teacherInit` "original" each
 * teacher starts from M_O's finished weights (train/teacher_init.ts), so M_O comes first. */
export function opRequests(
  cfg: TrainConfig,
  ds: CheckedDataset,
  scheme: PartitionScheme,
  dir: string,
  teacherInit: TeacherInit = "scratch",
): MemberRequest[] {
  const members = opMembers(ds, scheme, dir);
  // Before anything trains: a partition too small for the model's batch would fail only after
  // M_O and the teachers before it.
  for (const m of members) {
    checkMemberPairs(
      cfg.model,
      m.name === "original" ? "M_O" : `teacher ${m.name}`,
      m.pairs.length,
    );
  }
  const [original, ...teachers] = members.map((m): MemberRequest => ({
    name: m.name,
    runDir: m.runDir,
    cfg,
    trainPairs: m.pairs,
    valPairs: ds.val,
  }));
  return [
    original,
    ...teachers.map((t): MemberRequest => ({
      ...t,
      teacherInit,
      ...(teacherInit === "original" ? { startFrom: original } : {}),
    })),
  ];
}

/** The MTKD students as the request would train them (from M_O's committed best weights). */
export function studentRequests(
  cfg: TrainConfig,
  ds: CheckedDataset,
  dir: string,
  lambdas: number[],
  kdMargin = 0,
): MemberRequest[] {
  const init = committedWeights(originalDir(dir), "best") ?? undefined;
  return lambdas.map((lambda) => {
    // λ = 0 has no teacher, so no soft targets either: one control for every margin.
    const m = lambda === 0 ? 0 : kdMargin;
    return {
      name: `student λ=${lambda}${m ? ` margin ${m}` : ""}`,
      runDir: studentDir(dir, lambda, m),
      cfg: { ...cfg, init },
      trainPairs: ds.train,
      valPairs: ds.val,
      lambda,
      ...(m ? { kdMargin: m } : {}),
    };
  });
}

/** "0 = M_O (original), 1 = teacher small, …" for messages about --member. */
export function memberIndexHelp(scheme: PartitionScheme): string {
  return ["0 = M_O (original)", ...scheme.names.map((n, i) => `${i + 1} = teacher ${n}`)].join(
    ", ",
  );
}

/** The O-P members as a command needs them, each with the command that trains it alone. */
export function opRequired(requests: MemberRequest[]): RequiredMember[] {
  return requests.map((req, k) => ({
    req,
    fix: `deno task op --member ${k} (with the flags of the O-P run)`,
  }));
}
