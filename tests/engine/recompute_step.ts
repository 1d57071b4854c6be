// One step of a small net with eviction on or off, for the recompute tests: the pool's free
// buffers poisoned first (a recompute that left part of its output unwritten would show), then
// forward, Σ y·r and a backward with freeActivations; the gradients of x and the parameters and
// what eviction did (tensors let go, written again, bytes written again).

import { backward } from "../../engine/autograd.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { pool } from "../../engine/pool.ts";
import { flush } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import {
  parameter,
  recomputeStats,
  setEviction,
  type Tensor,
  tensor,
} from "../../engine/tensor.ts";
import { randArray } from "../util.ts";

export interface EvictStep {
  grads: number[][];
  counts: { evictions: number; recomputes: number; bytes: number };
}

/** x of `shape` (seeded `seed`) through `forward`, r seeded `seed + 1`. */
export async function evictStep(
  evict: boolean,
  forward: (x: Tensor) => Tensor,
  params: Tensor[],
  shape: number[],
  seed: number,
): Promise<EvictStep> {
  const x = parameter(randArray(shape.reduce((a, b) => a * b), seed), shape, "x");
  for (const p of params) p.grad = null;
  flush();
  pool.poisonFree(NaN);
  setEviction(evict);
  const before = { ...recomputeStats };
  try {
    scope(() => {
      const y = forward(x);
      const r = tensor(randArray(y.size, seed + 1), y.shape);
      backward(sum(mul(y, r)), undefined, { freeActivations: true });
    });
  } finally {
    setEviction(true);
  }
  const counts = {
    evictions: recomputeStats.evictions - before.evictions,
    recomputes: recomputeStats.recomputes - before.recomputes,
    bytes: recomputeStats.recomputedBytes - before.recomputedBytes,
  };
  const grads = [];
  for (const p of [x, ...params]) grads.push(Array.from(await p.grad!.read()));
  x.dispose();
  return { grads, counts };
}
