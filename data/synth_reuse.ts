// The demo's synthetic dataset, made once and reused: a folder made with other flags (its
// synth.json says which) is refused naming them, or, with retrain, made again.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { writeSynthDataset } from "./synth.ts";

export interface SynthRequest {
  pairs: number;
  size: number;
  seed: number;
  val: number;
  test: number;
}

/** Make `data` with these settings unless it already holds them; `log` hears what was done. */
export async function ensureSynthDataset(
  data: string,
  want: SynthRequest,
  retrain: boolean,
  log: (line: string) => void,
): Promise<void> {
  const stale = existsSync(join(data, "train")) ? synthDiff(data, want) : [];
  if (stale.length && !retrain) {
    throw new Error(
      `${data} was made with other flags (was → now: ${stale.join(", ")}): repeat them, ` +
        `pass --retrain to make it again with these (every member is retrained), or choose another --out`,
    );
  }
  if (stale.length) {
    log(`synth: ${data} was made with ${stale.join(", ")}: making it again`);
    await Deno.remove(data, { recursive: true });
  }
  if (!existsSync(join(data, "train"))) {
    log(`synth: ${want.pairs} pairs of ${want.size}×${want.size} → ${data}`);
    await writeSynthDataset({ out: data, ...want });
  } else log(`synth: reusing ${data}`);
}

/** The flags the existing synthetic data was made with that differ from these (its synth.json). */
function synthDiff(data: string, f: { pairs: number; size: number; seed: number }): string[] {
  const file = join(data, "synth.json");
  if (!existsSync(file)) return ["unknown flags (no synth.json)"];
  const was = JSON.parse(Deno.readTextFileSync(file)) as {
    pairs: number;
    size: number;
    seed: number;
  };
  return (["pairs", "size", "seed"] as const).filter((k) => was[k] !== f[k]).map((k) =>
    `--${k} ${was[k]} → ${f[k]}`
  );
}
