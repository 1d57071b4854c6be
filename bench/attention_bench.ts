// Flash-style attention, forward alone and forward + backward through the op, at BIT's and
// MiT-b0's shapes (BENCH_LARGE=1) or small shapes that the software adapter finishes quickly.
// Each sample records BATCH steps then waits once (sync).

import { backward } from "../engine/autograd.ts";
import { initDevice } from "../engine/device.ts";
import { attention } from "../engine/ops/attention.ts";
import { sync } from "../engine/recorder.ts";
import { scope } from "../engine/scope.ts";
import { parameter, tensor } from "../engine/tensor.ts";

await initDevice();

const BATCH = 5;
const LARGE = !!Deno.env.get("BENCH_LARGE");

interface Shape {
  name: string;
  b: number;
  h: number;
  lq: number;
  lk: number;
  d: number;
}

const SHAPES: Shape[] = LARGE
  ? [
    { name: "BIT decoder cross-attention", b: 8, h: 8, lq: 128 * 128, lk: 4, d: 8 },
    { name: "BIT encoder self-attention", b: 8, h: 8, lq: 8, lk: 8, d: 64 },
    { name: "MiT-b0 stage 1", b: 8, h: 1, lq: 128 * 128, lk: 256, d: 32 },
  ]
  : [
    { name: "cross-attention", b: 1, h: 2, lq: 1024, lk: 4, d: 8 },
    { name: "reduced keys", b: 1, h: 1, lq: 1024, lk: 64, d: 32 },
  ];

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + seed));
}

for (const s of SHAPES) {
  const qs = [s.b, s.h, s.lq, s.d], ks = [s.b, s.h, s.lk, s.d];
  const n = (x: number[]) => x.reduce((p, d) => p * d, 1);
  const q = parameter(values(n(qs), 1), qs), k = parameter(values(n(ks), 2), ks);
  const v = parameter(values(n(ks), 3), ks);
  const dout = tensor(values(n(qs), 4), qs).keep();
  const label = `${s.name} [${s.b}, ${s.h}] Lq ${s.lq} Lk ${s.lk} D ${s.d}`;
  Deno.bench({
    name: `attention forward ${label} ×${BATCH}`,
    group: s.name,
    baseline: true,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) scope(() => void attention(q, k, v));
      await sync();
      b.end();
    },
  });
  Deno.bench({
    name: `attention forward + backward ${label} ×${BATCH}`,
    group: s.name,
    async fn(b) {
      b.start();
      for (let i = 0; i < BATCH; i++) scope(() => backward(attention(q, k, v), dout));
      await sync();
      b.end();
    },
  });
}
