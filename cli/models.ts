// `deno task models`: the registry as a table — parameters and multiply-accumulates at 512×512,
// measured on this engine, beside the JL1-CD paper's Table II.

import { z } from "zod";
import { initDevice } from "../engine/device.ts";
import { measureMacs, MODELS } from "../models/registry.ts";
import { runCommand } from "./run.ts";

const HELP = `List the registered change-detection models.

Usage:
  deno task models

For each model: parameters, multiply-accumulates of one forward pass at 512×512 (counted by the
engine's conv and matmul ops), the JL1-CD paper's Table II figures, the output form, and the
default recipe (LR, λ). Where a model has training-only modules (LightCDNet's auxiliary head),
the parameters are given with and without them; Table II counts them without.

The adapter is named on stderr first; no kernel runs (the count is a dry run).`;

runCommand(import.meta, { help: HELP, flags: z.object({}) }, async () => {
  await initDevice();
  const rows: string[][] = [[
    "model",
    "params (M)",
    "paper params",
    "GMACs@512",
    "GFLOPs (2×MACs)",
    "paper FLOPs (G)",
    "output",
    "lr",
    "λ",
  ]];
  const entries = Object.values(MODELS);
  for (const [k, e] of entries.entries()) {
    console.error(`counting ${e.name} (${k + 1}/${entries.length})`);
    const m = e.create(0);
    const params = m.parameterCount() / 1e6;
    // Training-only modules (an auxiliary head) are in the state_dict but not in Table II.
    const extra = m.namedParameters()
      .filter(([n]) => e.trainingOnly?.some((p) => n.startsWith(p)))
      .reduce((s, [, t]) => s + t.size, 0) / 1e6;
    const macs = measureMacs(m) / 1e9;
    rows.push([
      e.name,
      extra > 0
        ? `${params.toFixed(3)} (${(params - extra).toFixed(3)} w/o aux)`
        : params.toFixed(3),
      e.paper.params.toFixed(3),
      macs.toFixed(3),
      (2 * macs).toFixed(3),
      e.paper.flops.toFixed(3),
      e.outputs === 1 ? "1-ch sigmoid" : "2-ch softmax",
      String(e.recipe.lr),
      String(e.recipe.lambda),
    ]);
    m.dispose();
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const [i, r] of rows.entries()) {
    console.log(
      r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
  console.log(
    "\nMACs are counted by the engine's conv/matmul ops during one forward pass (Table II counts one multiply-add as one FLOP).",
  );
});
