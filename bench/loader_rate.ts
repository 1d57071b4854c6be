// Loader throughput: pairs/s that the worker-decoding loader delivers on this machine's CPU
// (random 512 crops of a dataset's training split, ImageNet-normalised, as the trainer asks),
// to set beside the training step rate. No GPU involved.
// Usage: deno run -A bench/loader_rate.ts ROOT [--batch 8] [--batches 60] [--workers N]

import { parseArgs } from "node:util";
import { join } from "node:path";
import { listSplit } from "../data/dataset.ts";
import { IMAGENET, openLoader } from "../data/loader.ts";
import { defaultWorkerCount } from "../data/worker_pool.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    batch: { type: "string", default: "8" },
    batches: { type: "string", default: "60" },
    workers: { type: "string" },
    size: { type: "string", default: "512" },
  },
});
if (positionals.length !== 1) {
  console.error(
    "usage: deno run -A bench/loader_rate.ts ROOT [--batch 8] [--batches 60] [--workers N]",
  );
  Deno.exit(2);
}
const pairs = await listSplit(join(positionals[0], "train"));
const batch = Number(values.batch), n = Number(values.batches);
const workers = values.workers ? Number(values.workers) : defaultWorkerCount();
const loader = openLoader({
  pairs,
  batchSize: batch,
  cropSize: Number(values.size),
  normalize: IMAGENET,
  workers,
});
// The first batches include worker start-up; time the steady state after them.
for (let i = 0; i < 3; i++) await loader.next();
const t0 = performance.now();
for (let i = 0; i < n; i++) await loader.next();
const s = (performance.now() - t0) / 1000;
loader.close();
console.log(JSON.stringify({
  bench: "loader",
  workers,
  cores: navigator.hardwareConcurrency,
  batch,
  size: Number(values.size),
  pairs_per_s: +((n * batch) / s).toFixed(1),
}));
