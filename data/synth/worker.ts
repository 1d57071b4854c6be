// Worker entry for the synthetic benchmark: each request makes and writes one pair.

import { serveRequests } from "../worker_serve.ts";
import { type SynthJob, type SynthJobResult, writeSynthPair } from "./write_pair.ts";

serveRequests<SynthJob, SynthJobResult>(async (job) => ({ res: await writeSynthPair(job) }));
