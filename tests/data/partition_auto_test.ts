// Partitions from the data (equal-count CAR thresholds), routing near a threshold, and the one
// reading of --teachers / --thresholds / --auto that every command shares.

import assert from "node:assert/strict";
import { buildManifest, neighbourPartitions, partitionMembers } from "../../data/partition.ts";
import {
  equalCountScheme,
  equalCountThresholds,
  partitionCount,
  schemeFor,
} from "../../data/partition_auto.ts";
import { schemeOf } from "../../cli/method_flags.ts";

const counts = (cars: number[], k: number) => {
  const m = buildManifest(
    cars.map((car, i) => ({ name: `p${i}`, car })),
    equalCountScheme(cars, k),
  );
  return Object.values(partitionMembers(m)).map((n) => n.length);
};

Deno.test("equal-count thresholds split the training CARs into K equal parts", () => {
  const cars = Array.from({ length: 12 }, (_, i) => (i + 1) / 100); // 0.01 … 0.12
  assert.deepEqual(equalCountThresholds(cars, 1), []);
  assert.deepEqual(equalCountThresholds(cars, 2), [0.065]); // between 0.06 and 0.07
  assert.deepEqual(counts(cars, 2), [6, 6]);
  assert.deepEqual(counts(cars, 3), [4, 4, 4]);
  assert.deepEqual(counts(cars, 4), [3, 3, 3, 3]);
  // Order of the input does not matter, and the thresholds are short decimals.
  assert.deepEqual(equalCountThresholds([...cars].reverse(), 3), equalCountThresholds(cars, 3));
  for (const t of equalCountThresholds(cars, 4)) assert.ok(String(t).length <= 5, String(t));
});

Deno.test("ties never straddle a cut; too few distinct CARs or pairs are named errors", () => {
  // Half the pairs have CAR 0: a cut between equal values is impossible, so it moves.
  const cars = [0, 0, 0, 0, 0, 0, 0.01, 0.02, 0.3, 0.4];
  const [t] = equalCountThresholds(cars, 2);
  assert.ok(t > 0 && t < 0.01, String(t));
  assert.deepEqual(counts(cars, 2), [6, 4]);
  assert.throws(
    () => equalCountThresholds([0, 0, 0.5, 0.5], 3),
    /only 2 distinct values.*fewer --teachers/,
  );
  assert.throws(
    () => equalCountThresholds([0.1, 0.2], 3),
    /at least 3 training pairs.*fewer --teachers/,
  );
});

Deno.test("within the margin of a threshold both neighbours route; margin 0 never", () => {
  const th = [0.05, 0.2];
  assert.equal(neighbourPartitions(0.06, th, 0), null);
  assert.deepEqual(neighbourPartitions(0.06, th, 0.02), [0, 1]);
  assert.deepEqual(neighbourPartitions(0.19, th, 0.02), [1, 2]);
  assert.equal(neighbourPartitions(0.12, th, 0.02), null);
  assert.deepEqual(neighbourPartitions(0.1, [0.08, 0.11], 0.05), [1, 2], "the nearest threshold");
  assert.equal(neighbourPartitions(0.5, [], 0.5), null, "one partition has no neighbour");
  assert.throws(() => neighbourPartitions(0.1, th, -1), /route margin -1/);
});

Deno.test("--teachers / --thresholds / --auto: one reading, errors name the flag and the fix", () => {
  assert.deepEqual((schemeOf({}) as { thresholds: number[] }).thresholds, [0.05, 0.2]);
  assert.deepEqual((schemeOf({ teachers: "2" }) as { thresholds: number[] }).thresholds, [0.1]);
  assert.deepEqual(schemeOf({ auto: true, teachers: "4" }), { equalCount: 4 });
  assert.deepEqual(schemeOf({ auto: true }), { equalCount: 3 });
  assert.deepEqual(schemeOf({ teachers: "auto" }, { select: true }), { select: "auto" });
  assert.throws(() => schemeOf({ teachers: "4" }), /--teachers 4: the paper's schemes.*--auto/);
  assert.throws(() => schemeOf({ teachers: "auto" }), /--teachers auto: only deno task op/);
  assert.throws(
    () => schemeOf({ auto: true, teachers: "5" }),
    /--teachers 5: with --auto give 1 to 4/,
  );
  assert.throws(() => schemeOf({ auto: true, thresholds: [0.1] }), /leave out --thresholds/);
  const cars = [0.01, 0.02, 0.03, 0.04].map((car) => ({ car }));
  assert.deepEqual(schemeFor({ equalCount: 2 }, cars).thresholds, [0.025]);
  assert.equal(partitionCount({ equalCount: 2 }), 2);
  assert.equal(partitionCount({ select: "auto" }), null);
  assert.throws(() => schemeFor({ select: "auto" }, cars), /deno task op/);
});
