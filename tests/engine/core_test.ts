import assert from "node:assert/strict";
import { backward, noGrad, record } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { add, map, mul, mulScalar } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { reshape } from "../../engine/ops/shape.ts";
import { pool, sizeClass } from "../../engine/pool.ts";
import { scope } from "../../engine/scope.ts";
import { AUTO_FLUSH, stats, sync } from "../../engine/recorder.ts";
import { fillKernel, mapKernel } from "../../kernels/elementwise.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

Deno.test("size classes cover the request with at most 12.5 % waste above 4 KiB", () => {
  for (const b of [1, 4, 100, 4096, 4097, 10_000, 1 << 20, (1 << 20) + 1, 123_456_789]) {
    const c = sizeClass(b);
    assert.ok(c >= b, `class ${c} < ${b}`);
    if (b > 4096) assert.ok(c <= b * 1.125 + 4, `class ${c} wastes too much for ${b}`);
  }
});

Deno.test("scope disposes intermediates, keeps what it returns, and buffers are reused", async () => {
  const x = tensor([1, 2, 3]);
  const before = pool.live;
  const y = scope(() => {
    const a = mulScalar(x, 2);
    const b = add(a, x);
    return mul(b, b);
  });
  assert.deepEqual(pool.live, before + 1);
  assert.deepEqual(await y.toArray(), [9, 36, 81]);
  y.dispose();
  x.dispose();
  const live = pool.live;
  scope(() => {
    add(tensor([1, 2]), tensor([3, 4]));
  });
  assert.deepEqual(pool.live, live);
});

Deno.test("long recordings submit on their own every AUTO_FLUSH dispatches, in order", async () => {
  const n = AUTO_FLUSH * 2 + 7;
  const submits0 = stats.submits;
  let y = tensor([0.5, -1, 2]);
  for (let i = 0; i < n; i++) {
    const next = scope(() => add(y, tensor([1, 2, 3])));
    y.dispose();
    y = next;
  }
  assert.ok(stats.submits - submits0 >= 2, "submitted while recording");
  assertClose(await y.read(), [0.5 + n, -1 + 2 * n, 2 + 3 * n], { atol: 0, rtol: 1e-6 });
  y.dispose();
});

Deno.test("kernel generators are memoised on their spec, non-finite numbers kept apart", () => {
  const spec = {
    name: "mul",
    expr: "a * b",
    inputs: [{ shape: [3, 5] }, { shape: [5] }],
    outShape: [3, 5],
  };
  assert.equal(mapKernel(spec), mapKernel(structuredClone(spec)));
  assert.notEqual(mapKernel(spec), mapKernel({ ...spec, expr: "a + b" }));
  assert.equal(fillKernel(7, 1), fillKernel(7, 1));
  assert.notEqual(fillKernel(7, 1), fillKernel(7, 2));
  assert.throws(() => fillKernel(7, NaN), /non-finite/);
  assert.throws(() => fillKernel(7, Infinity), /non-finite/);
});

Deno.test("broadcast errors name both shapes", () => {
  assert.throws(
    () => scope(() => add(tensor([1, 2, 3]), tensor([1, 2]))),
    /\[3\] and \[2\] do not broadcast/,
  );
});

Deno.test("reshape keeps the data and routes the gradient", async () => {
  await gradCheck((x) => mul(reshape(x, [3, 2]), reshape(x, [3, 2])), [
    { data: randArray(6, 3), shape: [2, 3] },
  ]);
  const r = scope(() => reshape(tensor([1, 2, 3, 4, 5, 6], [2, 3]), [-1, 2]));
  assert.deepEqual(r.shape, [3, 2]);
  r.dispose();
});

Deno.test("gradients accumulate across backward calls and noGrad records nothing", async () => {
  const w = parameter([1, 2], [2]);
  for (let i = 0; i < 3; i++) scope(() => backward(sum(mul(w, w))));
  assertClose(await w.grad!.read(), [6, 12]);
  const y = noGrad(() => mul(w, w));
  assert.deepEqual(y.requiresGrad, false);
  y.dispose();
  w.dispose();
});

Deno.test("gradCheck catches a wrong backward rule", async () => {
  // x³ with a deliberately wrong derivative (2x instead of 3x²)
  const wrongCube = (x: Tensor) =>
    record(map("cube", "a * a * a", [x]), [x], "cube", (g) => [map("bad", "2.0 * a * b", [g, x])]);
  await assert.rejects(
    () => gradCheck(wrongCube, [{ data: randArray(5, 1, 0.5, 1.5), shape: [5] }]),
    /gradient of input 0/,
  );
});

Deno.test("a kernel error names the op", async () => {
  // a map whose expression does not compile
  await assert.rejects(async () => {
    scope(() => {
      map("broken_op", "a +* 1.0", [tensor([1])]);
    });
    await sync();
  }, /broken_op/);
});
