import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import {
  adaptiveAvgPool2d,
  adaptiveMaxPool2d,
  avgPool2d,
  type AvgPool2dOptions,
  maxPool2d,
  type Pool2dOptions,
} from "../../engine/ops/pool.ts";
import { backward, noGrad } from "../../engine/autograd.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, type Tensor, tensor } from "../../engine/tensor.ts";
import { inPlaceRuns } from "./in_place_sums.ts";
import { assertClose, gradCheck, randArray, rng } from "../util.ts";

await initDevice();

/** Distinct values 0.05 apart in random order, so a finite-difference step of 0.01 never
 * changes which element is the maximum. */
function distinct(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return Float32Array.from(perm, (v) => (v - n / 2) * 0.05);
}

interface RefPool {
  kernel: number[];
  stride: number[];
  padding: number[];
  out: number[];
  countIncludePad?: boolean;
}

/** float64 pooling of [B, C, H, W] with the expected output size given explicitly. */
function refPool(x: ArrayLike<number>, shape: number[], o: RefPool, kind: "max" | "avg") {
  const [b, c, h, w] = shape;
  const [oh, ow] = o.out;
  const y = new Float64Array(b * c * oh * ow);
  for (let p = 0; p < b * c; p++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const hs = i * o.stride[0] - o.padding[0], ws = j * o.stride[1] - o.padding[1];
        let best = -Infinity, sum = 0, inside = 0;
        for (let u = hs; u < hs + o.kernel[0]; u++) {
          for (let v = ws; v < ws + o.kernel[1]; v++) {
            if (u < 0 || u >= h || v < 0 || v >= w) continue;
            const val = x[p * h * w + u * w + v];
            best = Math.max(best, val);
            sum += val;
            inside++;
          }
        }
        // PyTorch: with padding counted, the window is clipped to the padded input only
        const padded = (Math.min(hs + o.kernel[0], h + o.padding[0]) - hs) *
          (Math.min(ws + o.kernel[1], w + o.padding[1]) - ws);
        const div = o.countIncludePad === false ? inside : padded;
        y[(p * oh + i) * ow + j] = kind === "max" ? best : sum / div;
      }
    }
  }
  return y;
}

const SHAPE = [2, 3, 7, 9];
const N = 2 * 3 * 7 * 9;

const maxCases: [string, Pool2dOptions, RefPool][] = [
  ["2x2 s2", { kernel: 2 }, { kernel: [2, 2], stride: [2, 2], padding: [0, 0], out: [3, 4] }],
  ["3x3 s2 p1", { kernel: 3, stride: 2, padding: 1 }, {
    kernel: [3, 3],
    stride: [2, 2],
    padding: [1, 1],
    out: [4, 5],
  }],
  ["3x3 s1 (overlapping)", { kernel: 3, stride: 1 }, {
    kernel: [3, 3],
    stride: [1, 1],
    padding: [0, 0],
    out: [5, 7],
  }],
  ["2x2 s2 ceil", { kernel: 2, ceilMode: true }, {
    kernel: [2, 2],
    stride: [2, 2],
    padding: [0, 0],
    out: [4, 5],
  }],
  ["3x2 s(2,3) p(1,0)", { kernel: [3, 2], stride: [2, 3], padding: [1, 0] }, {
    kernel: [3, 2],
    stride: [2, 3],
    padding: [1, 0],
    out: [4, 3],
  }],
];

async function check(
  fn: (x: Tensor) => Tensor,
  x: Float32Array,
  shape: number[],
  ref: Float64Array,
  outShape: number[],
) {
  const y = scope(() => fn(tensor(x, shape)));
  if (y.shape.join() !== outShape.join()) throw new Error(`shape [${y.shape}] != [${outShape}]`);
  assertClose(await y.read(), ref);
  y.dispose();
}

for (const [name, opts, ref] of maxCases) {
  Deno.test(`maxPool2d ${name}: forward, inference path and gradient`, async () => {
    const x = distinct(N, 1);
    const expected = refPool(x, SHAPE, ref, "max");
    const outShape = [2, 3, ...ref.out];
    await check((t) => maxPool2d(t, opts), x, SHAPE, expected, outShape);
    await check((t) => noGrad(() => maxPool2d(t, opts)), x, SHAPE, expected, outShape);
    await gradCheck((t) => maxPool2d(t, opts), [{ data: x, shape: SHAPE }]);
  });
}

// A tensor that feeds a max pooling and another op (an FC skip, a SNUNet node): where the
// other op's gradient comes first, the pooling's rule adds into it (autograd's `into`) with no
// grad_add pass. Both orders, against the reference: the pooled gradient
// scattered to each window's max, plus 3 × the other op's.
Deno.test("maxPool2d adds its gradient into the input's gradient so far: equal to separate sums, no grad_add", async () => {
  const x = distinct(N, 7), r1 = randArray(2 * 3 * 3 * 4, 8), r2 = randArray(N, 9);
  const want = new Float64Array(N);
  for (let k = 0; k < N; k++) want[k] = 3 * r2[k];
  // 2×2 windows over [2, 3, 7, 9] (floor: 3 × 4 windows per plane); x's values are distinct.
  for (let p = 0; p < 6; p++) {
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 4; j++) {
        let best = -1;
        for (let di = 0; di < 2; di++) {
          for (let dj = 0; dj < 2; dj++) {
            const k = p * 63 + (2 * i + di) * 9 + 2 * j + dj;
            if (best < 0 || x[k] > x[best]) best = k;
          }
        }
        want[best] += r1[p * 12 + i * 4 + j];
      }
    }
  }
  const runs = await inPlaceRuns(
    () => [parameter(x, SHAPE, "x")],
    ([xt]) => maxPool2d(xt, { kernel: 2 }),
    () => r1,
    r2,
  );
  for (const r of runs) assertClose(r.grads[0], want, { what: "x grad", atol: 1e-5 });
  assert.ok(runs.some((r, k) => k % 2 === 0 && r.adds === 0), "no order summed in place");
  assert.ok(runs.every((r, k) => k % 2 === 0 || r.adds > 0), "apart: a grad_add each");
});

Deno.test("global max pooling adds its gradient into the input's gradient so far: equal to the reference, no grad_add", async () => {
  const x = distinct(N, 17), r1 = randArray(6, 18), r2 = randArray(N, 19);
  const want = Float64Array.from(r2, (v) => 3 * v);
  for (let p = 0; p < 6; p++) {
    let best = p * 63;
    for (let k = p * 63; k < (p + 1) * 63; k++) if (x[k] > x[best]) best = k;
    want[best] += r1[p];
  }
  const runs = await inPlaceRuns(
    () => [parameter(x, SHAPE, "x")],
    ([xt]) => adaptiveMaxPool2d(xt, 1),
    () => r1,
    r2,
  );
  for (const r of runs) assertClose(r.grads[0], want, { what: "x grad", atol: 1e-5 });
  assert.ok(runs.some((r, k) => k % 2 === 0 && r.adds === 0), "no order summed in place");
});

const avgCases: [string, AvgPool2dOptions, RefPool][] = [
  ["2x2 s2", { kernel: 2 }, { kernel: [2, 2], stride: [2, 2], padding: [0, 0], out: [3, 4] }],
  ["3x3 s2 p1", { kernel: 3, stride: 2, padding: 1 }, {
    kernel: [3, 3],
    stride: [2, 2],
    padding: [1, 1],
    out: [4, 5],
  }],
  ["3x3 s2 p1 without padding in the count", {
    kernel: 3,
    stride: 2,
    padding: 1,
    countIncludePad: false,
  }, { kernel: [3, 3], stride: [2, 2], padding: [1, 1], out: [4, 5], countIncludePad: false }],
  ["3x3 s1 (overlapping)", { kernel: 3, stride: 1 }, {
    kernel: [3, 3],
    stride: [1, 1],
    padding: [0, 0],
    out: [5, 7],
  }],
  ["3x3 s2 p1 ceil", { kernel: 3, stride: 2, padding: 1, ceilMode: true }, {
    kernel: [3, 3],
    stride: [2, 2],
    padding: [1, 1],
    out: [4, 5],
  }],
  ["2x2 s2 ceil (windows past the edge)", { kernel: 2, ceilMode: true }, {
    kernel: [2, 2],
    stride: [2, 2],
    padding: [0, 0],
    out: [4, 5],
  }],
];

for (const [name, opts, ref] of avgCases) {
  Deno.test(`avgPool2d ${name}: forward and gradient`, async () => {
    const x = distinct(N, 2);
    await check((t) => avgPool2d(t, opts), x, SHAPE, refPool(x, SHAPE, ref, "avg"), [
      2,
      3,
      ...ref.out,
    ]);
    await gradCheck((t) => avgPool2d(t, opts), [{ data: x, shape: SHAPE }]);
  });
}

Deno.test("avgPool2d ceil mode with padding on 8x10: the last windows reach into the padding", async () => {
  const shape = [1, 3, 8, 10];
  const x = distinct(240, 3);
  for (const countIncludePad of [true, false]) {
    const opts = { kernel: 3, stride: 2, padding: 1, ceilMode: true, countIncludePad };
    const ref = { kernel: [3, 3], stride: [2, 2], padding: [1, 1], out: [5, 6], countIncludePad };
    await check((t) => avgPool2d(t, opts), x, shape, refPool(x, shape, ref, "avg"), [1, 3, 5, 6]);
    await gradCheck((t) => avgPool2d(t, opts), [{ data: x, shape }]);
  }
});

Deno.test("adaptive pooling: global average and max, and dividing output sizes", async () => {
  const x = distinct(N, 4);
  const whole = { kernel: [7, 9], stride: [7, 9], padding: [0, 0], out: [1, 1] };
  await check((t) => adaptiveAvgPool2d(t, 1), x, SHAPE, refPool(x, SHAPE, whole, "avg"), [
    2,
    3,
    1,
    1,
  ]);
  await check((t) => adaptiveMaxPool2d(t, 1), x, SHAPE, refPool(x, SHAPE, whole, "max"), [
    2,
    3,
    1,
    1,
  ]);
  const strips = { kernel: [1, 3], stride: [1, 3], padding: [0, 0], out: [7, 3] };
  await check((t) => adaptiveMaxPool2d(t, [7, 3]), x, SHAPE, refPool(x, SHAPE, strips, "max"), [
    2,
    3,
    7,
    3,
  ]);
  await check((t) => adaptiveAvgPool2d(t, [7, 3]), x, SHAPE, refPool(x, SHAPE, strips, "avg"), [
    2,
    3,
    7,
    3,
  ]);
  await gradCheck((t) => adaptiveAvgPool2d(t, 1), [{ data: x, shape: SHAPE }]);
  await gradCheck((t) => adaptiveMaxPool2d(t, 1), [{ data: x, shape: SHAPE }]);
  let threw = false;
  try {
    // Average pooling takes PyTorch's overlapping bins (adaptive_pool_test.ts); max does not.
    scope(() => adaptiveMaxPool2d(tensor(x, SHAPE), 2));
  } catch {
    threw = true;
  }
  if (!threw) throw new Error("a non-dividing adaptive max size must be refused");
});

// Planes larger than a workgroup, with ties (values from a set of 7, plus a plane of one
// value): the maximum and the gradient's target must be the first maximum in row-major
// order, as PyTorch. 37×41 takes the scalar loads, 18×20 the vec4 ones.
for (const [h, w] of [[37, 41], [18, 20]]) {
  Deno.test(`adaptiveMaxPool2d global on ${h}x${w} planes with ties: value and first argmax`, async () => {
    const shape = [2, 3, h, w], n = h * w, planes = 6;
    const r = rng(h);
    const x = Float32Array.from({ length: planes * n }, () => Math.floor(r() * 7) - 3);
    x.fill(-2, 5 * n); // the last plane is one value throughout
    const gy = randArray(planes, 3);
    const expected = new Float64Array(planes), dx = new Float64Array(planes * n);
    for (let p = 0; p < planes; p++) {
      let at = 0;
      for (let q = 1; q < n; q++) if (x[p * n + q] > x[p * n + at]) at = q;
      expected[p] = x[p * n + at];
      dx[p * n + at] = gy[p];
    }
    const xp = parameter(x, shape);
    const g = tensor(gy, [2, 3, 1, 1]);
    let y: Tensor | null = null;
    scope(() => {
      const out = adaptiveMaxPool2d(xp, 1);
      y = out.keep();
      backward(sum(mul(out, g)));
    });
    assertClose(await y!.read(), expected);
    assertClose(await xp.grad!.read(), dx);
    await check((t) => noGrad(() => adaptiveMaxPool2d(t, 1)), x, shape, expected, [2, 3, 1, 1]);
    y!.kept = false;
    y!.dispose();
    xp.dispose();
    g.dispose();
  });
}
