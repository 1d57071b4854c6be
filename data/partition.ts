// O-P partitions: the training set split by ground-truth CAR, one teacher per partition.
// A pair belongs to the first partition whose upper threshold its CAR does not exceed
// (CAR ≤ th₁ → first, th₁ < CAR ≤ th₂ → second, …, above the last → last), as in the paper.

import { z } from "zod";

export interface PartitionScheme {
  /** Ascending upper bounds, one fewer than names. */
  thresholds: number[];
  names: string[];
}

/** The paper's three teachers: CAR ≤ 0.05 small, ≤ 0.2 medium, else large. */
export const THREE_TEACHERS: PartitionScheme = {
  thresholds: [0.05, 0.2],
  names: ["small", "medium", "large"],
};

/** The paper's two teachers: CAR ≤ 0.10 small, else large. */
export const TWO_TEACHERS: PartitionScheme = {
  thresholds: [0.1],
  names: ["small", "large"],
};

/** One partition holding every pair (no thresholds): O-P with one teacher, which the automatic
 * choice of the teacher count scores beside 2–4 (a teacher trained on every pair). */
export const ONE_TEACHER: PartitionScheme = { thresholds: [], names: ["all"] };

/** Validate thresholds and name the partitions (p0, p1, … when names are not given; none gives
 * the one partition "all"). */
export function customScheme(thresholds: number[], names?: string[]): PartitionScheme {
  thresholds.forEach((t, i) => {
    if (!(t > 0 && t < 1)) throw new Error(`partition threshold ${t} is not in (0, 1)`);
    if (i > 0 && !(t > thresholds[i - 1])) {
      throw new Error(`partition thresholds must increase: ${thresholds.join(", ")}`);
    }
  });
  const n = thresholds.length + 1;
  const defaults = n === 1
    ? ONE_TEACHER.names
    : n === 2
    ? TWO_TEACHERS.names
    : n === 3
    ? THREE_TEACHERS.names
    : null;
  const chosen = names ?? defaults ?? Array.from({ length: n }, (_, i) => `p${i}`);
  if (chosen.length !== n) {
    throw new Error(
      `${thresholds.length} thresholds need ${n} partition names, got ${chosen.length}`,
    );
  }
  if (new Set(chosen).size !== n) throw new Error(`partition names repeat: ${chosen.join(", ")}`);
  return { thresholds: [...thresholds], names: [...chosen] };
}

/** Index of the partition a CAR falls in. */
export function partitionOf(car: number, thresholds: readonly number[]): number {
  for (let i = 0; i < thresholds.length; i++) if (car <= thresholds[i]) return i;
  return thresholds.length;
}

/** Name of the partition a CAR falls in. */
export function partitionName(car: number, scheme: PartitionScheme): string {
  return scheme.names[partitionOf(car, scheme.thresholds)];
}

/** How O-P's teachers start (op --teacher-init): from the model's fresh init, as the paper
 * does, or from M_O's trained weights. */
export const TEACHER_INITS = ["scratch", "original"] as const;
export type TeacherInit = typeof TEACHER_INITS[number];

export const ManifestSchema = z.object({
  thresholds: z.array(z.number().gt(0).lt(1)),
  names: z.array(z.string().min(1)).min(1),
  pairs: z.array(z.object({
    name: z.string().min(1),
    car: z.number().min(0).max(1),
    partition: z.string(),
  })),
  /** Written by op beside the partition (absent: a manifest of `partition`, or of an op run
   * before the flag existed, whose teachers started from scratch). */
  teacherInit: z.enum(TEACHER_INITS).optional(),
});

/** Which training pair goes to which teacher, as written next to a run. */
export type Manifest = z.infer<typeof ManifestSchema>;

/** Assign each pair its partition. */
export function buildManifest(
  pairs: readonly { name: string; car: number }[],
  scheme: PartitionScheme,
): Manifest {
  const checked = customScheme(scheme.thresholds, scheme.names);
  return {
    thresholds: checked.thresholds,
    names: checked.names,
    pairs: pairs.map((p) => ({
      name: p.name,
      car: p.car,
      partition: partitionName(p.car, checked),
    })),
  };
}

/** Pair names per partition, in manifest order. */
export function partitionMembers(manifest: Manifest): Record<string, string[]> {
  const out: Record<string, string[]> = Object.fromEntries(manifest.names.map((n) => [n, []]));
  for (const p of manifest.pairs) out[p.partition].push(p.name);
  return out;
}

export async function writeManifest(path: string, manifest: Manifest): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(manifest, null, 2) + "\n");
}

/** Read and validate a manifest; a pair whose partition disagrees with its CAR is an error. */
export async function readManifest(path: string): Promise<Manifest> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`${path}: not a readable JSON manifest (${(e as Error).message})`);
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `${path}: invalid manifest at ${issue.path.join(".") || "top"}: ${issue.message}`,
    );
  }
  const m = parsed.data;
  let scheme: PartitionScheme;
  try {
    scheme = customScheme(m.thresholds, m.names);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  for (const p of m.pairs) {
    const expected = partitionName(p.car, scheme);
    if (p.partition !== expected) {
      throw new Error(
        `${path}: pair ${p.name} has CAR ${p.car} and partition "${p.partition}", ` +
          `but the thresholds put it in "${expected}"`,
      );
    }
  }
  return m;
}

/** Routing that knows it is unsure: when `car` lies within `margin` of a threshold, the two
 * partitions on either side of the nearest such threshold (their teachers are then averaged);
 * otherwise null (hard routing). A margin of 0 never averages. */
export function neighbourPartitions(
  car: number,
  thresholds: readonly number[],
  margin: number,
): [number, number] | null {
  if (!(margin >= 0)) throw new Error(`route margin ${margin}: expected a number ≥ 0`);
  if (margin === 0) return null;
  let best = -1;
  thresholds.forEach((t, j) => {
    const d = Math.abs(car - t);
    if (d <= margin && (best < 0 || d < Math.abs(car - thresholds[best]))) best = j;
  });
  return best < 0 ? null : [best, best + 1];
}
