// Kernels must never read memory they did not write: fresh WebGPU buffers are zeroed, pooled
// ones are not. Filling every free pooled buffer with NaN before a second forward pass makes
// any such read visible.

import assert from "node:assert/strict";
import { noGrad } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { pool } from "../../engine/pool.ts";
import { flush } from "../../engine/recorder.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { MODELS } from "../../models/registry.ts";
import { randArray } from "../util.ts";

await initDevice();

for (
  const name of ["tinycd", "fc_siam_diff", "bit_r18", "changeformer_mit_b0", "changer_ex_mit_b0"]
) {
  Deno.test(`${name}: outputs are the same on poisoned reused buffers`, async () => {
    const model = MODELS[name].create(3).eval();
    const s = MODELS[name].minSize ?? 32, shape = [2, 3, s, s];
    const a = randArray(2 * 3 * s * s, 1), b = randArray(2 * 3 * s * s, 2);
    const once = async () => {
      const y = scope(() => noGrad(() => model.forward(tensor(a, shape), tensor(b, shape))));
      const v = await y.read();
      y.dispose();
      return v;
    };
    const clean = await once();
    flush();
    pool.poisonFree(NaN);
    const again = await once();
    assert.ok(clean.every(Number.isFinite), "clean run has non-finite outputs");
    assert.deepEqual(Array.from(again), Array.from(clean));
    model.dispose();
  });
}
