// Compares the engine's seeded initialisation (registry create(seed)) with PyTorch's, tensor by
// tensor, from the statistics bench/reference/init_stats.py writes (issue 22):
//   python3 bench/reference/init_stats.py /tmp/init.json fc_siam_diff snunet_c16
//   deno run -A bench/init_compare.ts /tmp/init.json
// Prints each tensor of more than 50 values whose standard deviation differs by more than 25 %
// (a different init rule, not sampling noise), and tensors only one side has; exits 1 if any.
// Open-CD's backbone./decode_head. prefixes are matched to cd_models.py's bare names.

import { initDevice, releaseDevice } from "../engine/device.ts";
import { modelEntry } from "../models/registry.ts";

const file = Deno.args[0];
if (!file) throw new Error("usage: deno run -A bench/init_compare.ts STATS.json (init_stats.py)");
const ref: Record<string, Record<string, [number, number, number, number]>> = JSON.parse(
  Deno.readTextFileSync(file),
);
await initDevice();
let bad = 0;
for (const [name, stats] of Object.entries(ref)) {
  const model = modelEntry(name).create(0);
  const seen = new Set<string>();
  const onlyEngine: string[] = [];
  let worst = { tensor: "", ratio: 1 };
  for (const [k, t] of model.stateDict()) {
    if (t.dtype !== "f32") continue;
    const key = k in stats ? k : k.replace(/^(backbone|neck|decode_head)\./, "");
    const r = stats[key];
    if (!r) {
      onlyEngine.push(k);
      continue;
    }
    seen.add(key);
    const v = (await t.read()) as Float32Array;
    let s = 0, s2 = 0;
    for (const x of v) s += x, s2 += x * x;
    const mean = s / v.length;
    const std = v.length > 1
      ? Math.sqrt(Math.max(0, s2 - v.length * mean * mean) / (v.length - 1))
      : 0;
    const ratio = r[1] > 0 ? std / r[1] : std === 0 ? 1 : Infinity;
    if (v.length > 50 && Math.abs(Math.log(ratio)) > Math.abs(Math.log(worst.ratio))) {
      worst = { tensor: k, ratio };
    }
    if (v.length > 50 && Math.abs(ratio - 1) > 0.25) {
      bad++;
      console.log(
        `${name} ${k} (${v.length}): std ${std.toPrecision(3)}, PyTorch ${r[1].toPrecision(3)}`,
      );
    }
  }
  const onlyTorch = Object.keys(stats).filter((k) => !seen.has(k));
  bad += onlyEngine.length + onlyTorch.length;
  console.log(JSON.stringify({ model: name, worstStdRatio: worst, onlyEngine, onlyTorch }));
  model.dispose();
}
releaseDevice();
if (bad) Deno.exit(1);
