import { initDevice } from "../../engine/device.ts";
import { logSoftmax, softmax } from "../../engine/ops/softmax.ts";
import { scope } from "../../engine/scope.ts";
import { tensor } from "../../engine/tensor.ts";
import { prod } from "../../kernels/common.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** float64 (log-)softmax of `x` (row-major `shape`) along `axis`. */
function reference(x: ArrayLike<number>, shape: number[], axis: number, log: boolean) {
  const outer = prod(shape.slice(0, axis)), n = shape[axis], inner = prod(shape.slice(axis + 1));
  const y = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const at = (k: number) => (o * n + k) * inner + i;
      let m = -Infinity;
      for (let k = 0; k < n; k++) m = Math.max(m, x[at(k)]);
      let s = 0;
      for (let k = 0; k < n; k++) s += Math.exp(x[at(k)] - m);
      for (let k = 0; k < n; k++) {
        y[at(k)] = log ? x[at(k)] - m - Math.log(s) : Math.exp(x[at(k)] - m) / s;
      }
    }
  }
  return y;
}

// Rows shorter and longer than one workgroup, the channel axis of NCHW, and a middle axis.
const CASES: [number[], number][] = [
  [[3, 5], -1],
  [[2, 3, 300], 2],
  [[3, 1], 1],
  [[2, 3, 5, 7], 1],
  [[3, 7, 5], 1],
  [[5, 3, 2], 0],
  // inner a multiple of 4: the vec4 strided kernel
  [[2, 3, 4, 5], 1],
  [[3, 5, 12], 0],
];

for (const log of [false, true]) {
  const name = log ? "logSoftmax" : "softmax";
  const op = log ? logSoftmax : softmax;
  for (const [shape, axis] of CASES) {
    Deno.test(`${name} [${shape}] axis ${axis} matches a float64 reference`, async () => {
      const x = randArray(prod(shape), 3 + axis, -4, 4);
      const y = scope(() => op(tensor(x, shape), axis));
      const a = axis < 0 ? axis + shape.length : axis;
      assertClose(await y.read(), reference(x, shape, a, log), { what: name });
      y.dispose();
    });
  }
  Deno.test(`${name} gradient (last axis and channel axis)`, async () => {
    await gradCheck((x) => op(x, -1), [{ data: randArray(21, 5, -2, 2), shape: [3, 7] }]);
    await gradCheck((x) => op(x, 1), [{ data: randArray(90, 6, -2, 2), shape: [2, 3, 3, 5] }]);
    await gradCheck((x) => op(x, 1), [{ data: randArray(48, 7, -2, 2), shape: [2, 3, 2, 4] }]);
  });
}

Deno.test("softmax is stable for large logits", async () => {
  const x = [1000, 1001, 999, -1000, 88.5, 90];
  const y = scope(() => softmax(tensor(x, [2, 3])));
  const got = await y.read();
  assertClose(got, reference(x, [2, 3], 1, false), { what: "softmax" });
  y.dispose();
  const z = scope(() => logSoftmax(tensor(x, [2, 3])));
  assertClose(await z.read(), reference(x, [2, 3], 1, true), { what: "logSoftmax", rtol: 1e-5 });
  z.dispose();
});
