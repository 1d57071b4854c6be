// deno task partition --data ROOT [--teachers 2|3 | --thresholds 0.05,0.2 | --auto --teachers K]
//   [--out DIR]

import { join } from "node:path";
import { z } from "zod";
import { buildManifest, writeManifest } from "../data/partition.ts";
import { schemeFor } from "../data/partition_auto.ts";
import { checkedDataset, partitionSummary, writePartitionFiles } from "../train/experiment.ts";
import { SCHEME_HELP, SchemeFlags, schemeOf } from "./method_flags.ts";
import { runCommand } from "./run.ts";

const HELP = `Partition a dataset's training pairs by Change Area Ratio (CAR), as O-P and MTKD do.

Usage:
  deno task partition --data ROOT [--teachers 2|3 | --thresholds 0.05,0.2] [--out DIR]
  deno task partition --data ROOT --auto [--teachers K] [--out DIR]

Writes DIR/partition.json (each training pair's CAR and partition; no images are copied) and
DIR/car_histogram.svg (CAR of train, val and test, the paper's Fig. 5), and prints the count and
CAR range per partition and the thresholds as --thresholds takes them. Three teachers: CAR ≤ 0.05
small, ≤ 0.2 medium, else large; two: ≤ 0.10. With --auto the thresholds cut the training set's
CARs into K partitions of equal counts (op, distill and demo take the same --auto --teachers K).

  --data ROOT            dataset root ({train,val,test}/{A,B,label})
  --out DIR              where to write (default ROOT/partition)
${SCHEME_HELP}
  --val-count N          val pairs taken from train when ROOT has no val/ (default 100)
`;

const Flags = z.object({
  data: z.string(),
  out: z.string().optional(),
  valCount: z.number().int().nonnegative().default(100),
  ...SchemeFlags,
});

runCommand(import.meta, { help: HELP, flags: Flags }, async (f) => {
  const spec = schemeOf(f);
  const out = f.out ?? join(f.data, "partition");
  const ds = await checkedDataset(
    { data: f.data, valCount: f.valCount } as Parameters<typeof checkedDataset>[0],
    console.error,
  );
  const scheme = schemeFor(spec, ds.train);
  await writePartitionFiles(ds, scheme, out);
  await writeManifest(join(out, "partition.json"), buildManifest(ds.train, scheme));
  console.log(partitionSummary(ds, scheme).join("\n"));
  console.log(`thresholds ${scheme.thresholds.join(",") || "none (one partition)"}`);
  console.log(`wrote ${join(out, "partition.json")} and ${join(out, "car_histogram.svg")}`);
});
