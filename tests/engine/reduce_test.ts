import { initDevice } from "../../engine/device.ts";
import { max, mean, sum, sumTo } from "../../engine/ops/reduce.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** float64 reduction of x (shape) over `axes` with fn. */
function ref(
  x: Float32Array,
  shape: number[],
  axes: number[],
  init: number,
  fn: (a: number, b: number) => number,
): Float64Array {
  const keptShape = shape.map((d, k) => (axes.includes(k) ? 1 : d));
  const out = new Float64Array(keptShape.reduce((p, d) => p * d, 1)).fill(init);
  const strides = shape.map((_, k) => shape.slice(k + 1).reduce((p, d) => p * d, 1));
  const kStrides = keptShape.map((_, k) => keptShape.slice(k + 1).reduce((p, d) => p * d, 1));
  for (let i = 0; i < x.length; i++) {
    let o = 0;
    for (let k = 0; k < shape.length; k++) {
      const c = Math.floor(i / strides[k]) % shape[k];
      if (!axes.includes(k)) o += c * kStrides[k];
    }
    out[o] = fn(out[o], x[i]);
  }
  return out;
}

const cases: [number[], number[]][] = [
  [[5, 7], [1]],
  [[5, 7], [0]],
  [[3, 5, 7, 9], [0, 2, 3]],
  [[2, 3, 4], [0, 2]],
  [[3, 5, 40001], [0, 2]], // long rows, few outputs: the two-stage path
  [[130001], [0]],
];

for (const [shape, axes] of cases) {
  Deno.test(`sum, mean and max over [${axes}] of [${shape}] match float64`, async () => {
    const n = shape.reduce((p, d) => p * d, 1);
    const x = randArray(n, n % 97);
    const s = ref(x, shape, axes, 0, (a, b) => a + b);
    const cnt = axes.reduce((p, k) => p * shape[k], 1);
    const [ts, tm, tx] = scope(() => {
      const t = tensor(x, shape);
      return [sum(t, axes), mean(t, axes), max(t, axes)];
    });
    assertClose(await ts.read(), s, { atol: 1e-3, rtol: 1e-4, what: "sum" });
    assertClose(await tm.read(), s.map((v) => v / cnt), { atol: 1e-6, rtol: 1e-4, what: "mean" });
    assertClose(await tx.read(), ref(x, shape, axes, -Infinity, Math.max), { what: "max" });
    for (const t of [ts, tm, tx]) t.dispose();
  });
}

Deno.test("sum and mean gradients; sumTo undoes broadcasting", async () => {
  await gradCheck((x) => sum(x, [0, 2]), [{ data: randArray(3 * 5 * 7, 1), shape: [3, 5, 7] }]);
  await gradCheck((x) => mean(x, 1, true), [{ data: randArray(3 * 5 * 7, 2), shape: [3, 5, 7] }]);
  const g = randArray(2 * 3 * 4, 3);
  const out = scope(() => sumTo(tensor(g, [2, 3, 4]), [3, 1]));
  assertClose(await out.read(), ref(g, [2, 3, 4], [0, 2], 0, (a, b) => a + b));
  out.dispose();
});
