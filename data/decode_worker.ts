// Worker entry: decodes pairs off the main thread, for the dataset checker and the batch loader.

import type { PairFiles } from "./pair_files.ts";
import {
  type CropSpec,
  inspectPair,
  loadSample,
  type Normalize,
  type PairCheck,
  type SampleTensors,
} from "./sample.ts";
import { serveRequests } from "./worker_serve.ts";

export type DecodeRequest =
  | { task: "check"; pair: PairFiles }
  | { task: "load"; pair: PairFiles; crop?: CropSpec; normalize?: Normalize };

export type DecodeResult = PairCheck | SampleTensors;

serveRequests<DecodeRequest, DecodeResult>(async (req) => {
  if (req.task === "check") return { res: await inspectPair(req.pair) };
  const s = await loadSample(req.pair, req.crop, req.normalize);
  const transfer = [s.a.buffer, s.b.buffer, s.label.buffer] as ArrayBuffer[];
  return { res: s, transfer };
});
