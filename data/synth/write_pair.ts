// One synthetic pair made and written as DIR/{A,B,label}/NAME.png (runs inside synth workers).

import { join } from "node:path";
import { encodeGrayPng, encodeRgbPng } from "../png.ts";
import { synthPair } from "./pair.ts";

export interface SynthJob {
  /** Split folder: files go to DIR/{A,B,label}/NAME.png. */
  dir: string;
  name: string;
  seed: number;
  size: number;
}

export interface SynthJobResult {
  name: string;
  car: number;
  targetCar: number;
  events: string[];
}

export async function writeSynthPair(job: SynthJob): Promise<SynthJobResult> {
  const p = synthPair(job.seed, job.size);
  const { size } = job, file = `${job.name}.png`;
  await Promise.all([
    Deno.writeFile(
      join(job.dir, "A", file),
      encodeRgbPng({ width: size, height: size, data: p.a }),
    ),
    Deno.writeFile(
      join(job.dir, "B", file),
      encodeRgbPng({ width: size, height: size, data: p.b }),
    ),
    Deno.writeFile(
      join(job.dir, "label", file),
      encodeGrayPng({ width: size, height: size, data: p.label }),
    ),
  ]);
  return { name: job.name, car: p.car, targetCar: p.targetCar, events: p.events };
}
