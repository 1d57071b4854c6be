import assert from "node:assert/strict";
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { exchange, type ExchangeMode } from "../../engine/ops/exchange.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { prod } from "../../kernels/common.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** Float64 reference written as Open-CD's layers are: outputs start as zeros, then the kept
 * entries are copied from their own date and the exchanged ones (index % int(1/p) == 0 on the
 * width or channel axis) from the other date. Returns [A', B'] stacked as the op's output. */
function reference(
  x: ArrayLike<number>,
  shape: number[],
  mode: ExchangeMode,
  p: number,
): Float64Array {
  const [n, c, h, w] = shape;
  const period = Math.trunc(1 / p);
  const half = (n / 2) * c * h * w;
  const out = new Float64Array(2 * half);
  for (let b = 0; b < n / 2; b++) {
    for (let ch = 0; ch < c; ch++) {
      for (let y = 0; y < h; y++) {
        for (let col = 0; col < w; col++) {
          const i = ((b * c + ch) * h + y) * w + col;
          const swapped = (mode === "spatial" ? col : ch) % period === 0;
          out[i] = swapped ? x[half + i] : x[i];
          out[half + i] = swapped ? x[i] : x[half + i];
        }
      }
    }
  }
  return out;
}

const SHAPES = [[2, 3, 5, 7], [4, 5, 3, 9], [6, 7, 1, 1]];

for (const mode of ["spatial", "channel"] as const) {
  Deno.test(`${mode} exchange matches a float64 reference (odd shapes, p = 1/2, 1/3, 1)`, async () => {
    for (const shape of SHAPES) {
      for (const p of [1 / 2, 1 / 3, 1]) {
        const data = randArray(prod(shape), shape[1] * 10 + shape[3]);
        const out = scope(() => exchange(tensor(data, shape), mode, p));
        assertClose(await out.read(), reference(data, shape, mode, p), {
          atol: 0,
          rtol: 0,
          what: `${mode} exchange [${shape}] p=${p}`,
        });
        out.dispose();
      }
    }
  });

  Deno.test(`${mode} exchange gradient: finite differences and the exchanged gradient`, async () => {
    const shape = [4, 5, 3, 7];
    await gradCheck((x) => exchange(x, mode), [{ data: randArray(prod(shape), 3), shape }], {
      maxPoints: 60,
    });
    // Every element, exactly: d/dx Σ r ⊙ exchange(x) is exchange(r).
    const r = randArray(prod(shape), 4);
    const x = parameter(randArray(prod(shape), 5), shape, "x");
    scope(() => backward(sum(mul(exchange(x, mode), tensor(r, shape)))));
    assertClose(await x.grad!.read(), reference(r, shape, mode, 1 / 2), {
      atol: 0,
      rtol: 0,
      what: `${mode} exchange gradient`,
    });
    x.dispose();
  });
}

Deno.test("exchange refuses an odd batch, a non-4-D tensor and p outside (0, 1]", () => {
  scope(() => {
    assert.throws(() => exchange(tensor(new Float32Array(3 * 4), [3, 2, 1, 2]), "channel"), /2B/);
    assert.throws(() => exchange(tensor(new Float32Array(8), [2, 2, 2]), "spatial"), /2B/);
    const x = tensor(new Float32Array(8), [2, 2, 1, 2]);
    assert.throws(() => exchange(x, "spatial", 0), /p must lie/);
    assert.throws(() => exchange(x, "spatial", 1.5), /p must lie/);
  });
});
