// A partition with fewer training pairs than the model's smallest batch is refused when op plans
// its members, before M_O trains: the trainer's batch is at most a member's pair count, and
// ChangeStar-UPerNet's one-pair batch failed inside a BatchNorm ("needs more than one value per
// channel") after M_O and the first teacher had trained (found by tests/cli/table2_commands_test.ts
// with TABLE2_MODELS=changestar_upernet_r18).

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkDataset } from "../../data/dataset.ts";
import { TWO_TEACHERS } from "../../data/partition.ts";
import { writeSynthDataset } from "../../data/synth.ts";
import { TrainConfigSchema } from "../../train/config.ts";
import { opRequests } from "../../train/member_requests.ts";
import { tempDir } from "../temp.ts";

const root = await tempDir({ prefix: "cd-member-pairs-" });
const data = join(root, "data");
// 12 training pairs; at the two-teacher threshold 0.10 the "large" partition holds one.
await writeSynthDataset({ out: data, pairs: 20, size: 64, seed: 0, val: 4, test: 4 });
const ds = await checkDataset(data);
const cfg = (model: string) =>
  TrainConfigSchema.parse({ model, data, out: root, iters: 1, batch: 2, size: 64 });

Deno.test("op refuses a partition smaller than the model's batch, naming it and the fix", () => {
  const large = ds.train.filter((p) => p.car > TWO_TEACHERS.thresholds[0]).length;
  assert.equal(large, 1, "the fixture's large partition");
  assert.throws(
    () => opRequests(cfg("changestar_upernet_r18"), ds, TWO_TEACHERS, join(root, "exp")),
    /^Error: teacher large: 1 training pair, but changestar_upernet_r18 trains on batches of at least 2 .*--thresholds, or --auto --teachers K/,
  );
  // A model whose BatchNorms see more than one value per image trains on one pair.
  assert.equal(opRequests(cfg("fc_siam_diff"), ds, TWO_TEACHERS, join(root, "exp")).length, 3);
});
