import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import * as E from "../../engine/ops/elementwise.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { absDiff } from "../../engine/ops/layout.ts";
import { mean, sum } from "../../engine/ops/reduce.ts";
import { inPlaceRuns } from "./in_place_sums.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

const SHAPE_A = [2, 3, 5];
const SHAPE_B = [3, 1];

function bcastRef(
  a: Float32Array,
  b: Float32Array,
  op: (x: number, y: number) => number,
): Float64Array {
  // a: [2,3,5], b: [3,1] broadcast to [2,3,5]
  const out = new Float64Array(30);
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 3; j++) {
      for (let k = 0; k < 5; k++) out[i * 15 + j * 5 + k] = op(a[i * 15 + j * 5 + k], b[j]);
    }
  }
  return out;
}

const binary = [
  ["add", E.add, (x: number, y: number) => x + y],
  ["sub", E.sub, (x: number, y: number) => x - y],
  ["mul", E.mul, (x: number, y: number) => x * y],
  ["div", E.div, (x: number, y: number) => x / y],
] as const;

for (const [name, op, ref] of binary) {
  Deno.test(`elementwise ${name} broadcasts against a float64 reference`, async () => {
    const a = randArray(30, 1);
    const b = randArray(3, 2, 0.5, 2);
    const out = scope(() => op(tensor(a, SHAPE_A), tensor(b, SHAPE_B)));
    assertClose(await out.read(), bcastRef(a, b, ref), { what: name });
    out.dispose();
  });
  Deno.test(`elementwise ${name} gradient matches finite differences`, async () => {
    await gradCheck(op, [
      { data: randArray(30, 3), shape: SHAPE_A },
      { data: randArray(3, 4, 0.5, 2), shape: SHAPE_B },
    ]);
  });
}

const unary = [
  ["neg", E.neg, (x: number) => -x, -1, 1],
  ["exp", E.exp, Math.exp, -1, 1],
  ["log", E.log, Math.log, 0.5, 2],
  ["sqrt", E.sqrt, Math.sqrt, 0.5, 2],
  ["abs", E.abs, Math.abs, -1, 1],
  ["square", E.square, (x: number) => x * x, -1, 1],
  ["relu", E.relu, (x: number) => Math.max(x, 0), -1, 1],
  ["sigmoid", E.sigmoid, (x: number) => 1 / (1 + Math.exp(-x)), -3, 3],
  ["tanh", E.tanh, Math.tanh, -2, 2],
] as const;

for (const [name, op, ref, lo, hi] of unary) {
  Deno.test(`elementwise ${name} forward and gradient`, async () => {
    // keep relu/abs away from the kink for the finite difference
    const data = randArray(35, 11, lo, hi).map((v) => (Math.abs(v) < 0.05 ? v + 0.1 : v));
    const out = scope(() => op(tensor(data, [5, 7])));
    assertClose(await out.read(), Array.from(data, ref), { what: name });
    out.dispose();
    await gradCheck(op, [{ data, shape: [5, 7] }]);
  });
}

Deno.test("scalar ops and powScalar", async () => {
  const data = randArray(13, 5, 0.5, 2);
  await gradCheck((x) => E.powScalar(x, 1.5), [{ data, shape: [13] }]);
  await gradCheck((x) => E.powScalar(x, 3), [{ data, shape: [13] }]);
  await gradCheck((x) => E.addScalar(E.mulScalar(x, -2.5), 1), [{ data, shape: [13] }]);
  const out = scope(() => E.powScalar(tensor(data), 3));
  assertClose(await out.read(), Array.from(data, (v) => v ** 3));
  out.dispose();
});

Deno.test("elementwise ops on sizes of a multiple of 4 (vec4 kernel), with a scalar operand", async () => {
  const a = randArray(24, 21), b = randArray(24, 22, 0.5, 2), s = randArray(1, 23, 0.5, 2);
  for (const [name, op, ref] of binary) {
    const out = scope(() => op(tensor(a, [4, 6]), tensor(b, [4, 6])));
    assertClose(await out.read(), Array.from(a, (v, i) => ref(v, b[i])), { what: name });
    out.dispose();
    const outS = scope(() => op(tensor(a, [4, 6]), tensor(s, [1])));
    assertClose(await outS.read(), Array.from(a, (v) => ref(v, s[0])), { what: `${name} scalar` });
    outS.dispose();
  }
  await gradCheck(E.mul, [{ data: a, shape: [4, 6] }, { data: b, shape: [4, 6] }]);
  const r = scope(() => E.sigmoid(tensor(a, [2, 12])));
  assertClose(await r.read(), Array.from(a, (x) => 1 / (1 + Math.exp(-x))));
  r.dispose();
});

// Rules that add their gradient into the input's gradient so far (autograd's `into`): mul (both
// operands; one broadcast, which sums apart), |a − b|, sum and mean. Each graph uses its input a
// second time through mulScalar, in both orders, with accumulateInPlace on and off: the
// gradients agree, and some order needs no grad_add. Odd sizes (scalar kernels) and vec4 ones.
const intoCases: [string, (x: Tensor, y: Tensor) => Tensor][] = [
  ["mul", (x, y) => E.mul(x, y)],
  ["mul by a broadcast row", (x, y) => E.mul(x, mean(y, 0, true))],
  ["absDiff", (x, y) => absDiff(x, y)],
  ["sum over the last axis", (x) => sum(x, -1, true)],
  ["mean over axis 1", (x) => mean(x, 1, true)],
];
for (const size of [[3, 5, 7], [2, 4, 8]]) {
  for (const [name, op] of intoCases) {
    Deno.test(`${name} (${size.join("×")}) adds its gradient into the input's gradient so far: equal to separate sums`, async () => {
      const n = size.reduce((a, b) => a * b);
      const xv = randArray(n, 80), yv = randArray(n, 81), r2 = randArray(n, 83);
      const runs = await inPlaceRuns(
        () => [parameter(xv, size, "x"), parameter(yv, size, "y")],
        ([x, y]) => op(x, y),
        (m) => randArray(m, 82),
        r2,
      );
      for (const r of runs.slice(1)) {
        r.grads.forEach((g, k) =>
          assertClose(g, runs[0].grads[k], { what: `grad ${k}`, atol: 1e-5 })
        );
      }
      assert.ok(runs.some((r, k) => k % 2 === 0 && r.adds === 0), "no order summed in place");
    });
  }
}

Deno.test("addRelu: relu(a + b) in one pass, broadcasting, against a float64 reference and finite differences", async () => {
  const b = randArray(3, 21, -1, 1);
  // Sums kept at least 0.1 from the kink, so the finite differences see one side of it.
  const a = randArray(30, 22, -1, 1).map((v, i) => {
    const s = v + b[Math.floor(i / 5) % 3];
    return Math.abs(s) < 0.1 ? v + (s < 0 ? -0.2 : 0.2) : v;
  });
  const out = scope(() => E.addRelu(tensor(a, SHAPE_A), tensor(b, SHAPE_B)));
  const expect = bcastRef(a, b, (x, y) => Math.max(x + y, 0));
  assert.ok(expect.some((v) => v === 0) && expect.some((v) => v > 0), "both sides of the kink");
  assertClose(await out.read(), expect, { what: "addRelu" });
  out.dispose();
  await gradCheck(E.addRelu, [{ data: a, shape: SHAPE_A }, { data: b, shape: SHAPE_B }]);
  // Equal shapes: one gradient tensor serves both inputs.
  await gradCheck(E.addRelu, [
    { data: a, shape: SHAPE_A },
    { data: randArray(30, 23, 0.15, 0.6), shape: SHAPE_A },
  ]);
});
