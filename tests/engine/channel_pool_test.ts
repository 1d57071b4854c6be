import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { channelMeanMax } from "../../engine/ops/channel_pool.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { prod } from "../../kernels/common.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** Float64 reference: mean and max over the channel axis, and each pixel's first argmax. */
function reference(x: ArrayLike<number>, shape: number[]) {
  const [n, c, h, w] = shape;
  const p = h * w;
  const out = new Float64Array(n * 2 * p);
  const arg = new Int32Array(n * p);
  for (let b = 0; b < n; b++) {
    for (let q = 0; q < p; q++) {
      let total = 0, best = -Infinity, at = 0;
      for (let k = 0; k < c; k++) {
        const v = x[(b * c + k) * p + q];
        total += v;
        if (v > best) [best, at] = [v, k];
      }
      out[b * 2 * p + q] = total / c;
      out[b * 2 * p + p + q] = best;
      arg[b * p + q] = at;
    }
  }
  return { out, arg };
}

/** Values spaced 0.05 apart in a shuffled order: no two channels within the finite-difference
 * step of each other, so the max has no kink there. */
function spread(n: number, seed: number): Float32Array {
  const r = randArray(n, seed);
  const order = [...r.keys()].sort((i, j) => r[i] - r[j]);
  const out = new Float32Array(n);
  order.forEach((i, rank) => (out[i] = (rank - n / 2) * 0.05));
  return out;
}

const SHAPES = [[1, 1, 3, 5], [2, 3, 5, 7], [3, 17, 2, 9]];

Deno.test("channelMeanMax matches a float64 reference (odd shapes)", async () => {
  for (const shape of SHAPES) {
    const data = randArray(prod(shape), shape[1] * 10 + shape[3]);
    const out = scope(() => channelMeanMax(tensor(data, shape)));
    assertClose(await out.read(), reference(data, shape).out, {
      atol: 1e-6,
      rtol: 1e-6,
      what: `channelMeanMax [${shape}]`,
    });
    out.dispose();
  }
});

Deno.test("channelMeanMax gradient: finite differences and the exact rule", async () => {
  const shape = [2, 5, 3, 7];
  await gradCheck(channelMeanMax, [{ data: spread(prod(shape), 3), shape }], { maxPoints: 60 });
  // Every element: dx = g_mean / C + g_max at the argmax channel.
  const [n, c, h, w] = shape;
  const p = h * w;
  const data = randArray(prod(shape), 5);
  const r = randArray(n * 2 * p, 4);
  const x = parameter(data, shape, "x");
  scope(() => backward(sum(mul(channelMeanMax(x), tensor(r, [n, 2, h, w])))));
  const { arg } = reference(data, shape);
  const want = new Float64Array(prod(shape));
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      for (let q = 0; q < p; q++) {
        want[(b * c + k) * p + q] = r[b * 2 * p + q] / c +
          (arg[b * p + q] === k ? r[b * 2 * p + p + q] : 0);
      }
    }
  }
  assertClose(await x.grad!.read(), want, { atol: 1e-7, rtol: 1e-6, what: "channelMeanMax grad" });
  x.dispose();
});
