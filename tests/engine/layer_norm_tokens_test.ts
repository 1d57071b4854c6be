// The cooperative layer norm of contiguous rows (kernels/layer_norm_tokens.ts) against float64:
// rows spread over 2 to 32 threads, vec4 and scalar elements, rows that end mid-thread, several
// row groups per workgroup in the backward.
import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { run } from "../../engine/launch.ts";
import { layerNorm } from "../../engine/ops/layer_norm.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { scope } from "../../engine/scope.ts";
import { empty, parameter, tensor } from "../../engine/tensor.ts";
import {
  tokenNormGradGroups,
  tokenNormGradKernel,
  tokenTiling,
} from "../../kernels/layer_norm_tokens.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

/** float64 layer norm of `rows` rows of `len`, and the gradients of Σ y·r. */
function reference(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  r: Float32Array,
  len: number,
  eps = 1e-5,
) {
  const rows = x.length / len;
  const y = new Float64Array(x.length), dx = new Float64Array(x.length);
  const dw = new Float64Array(len), db = new Float64Array(len);
  const mean = new Float64Array(rows), rstd = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const o = i * len;
    let m = 0;
    for (let j = 0; j < len; j++) m += x[o + j];
    m /= len;
    let v = 0;
    for (let j = 0; j < len; j++) v += (x[o + j] - m) ** 2;
    const rs = 1 / Math.sqrt(v / len + eps);
    mean[i] = m;
    rstd[i] = rs;
    let a = 0, c = 0;
    for (let j = 0; j < len; j++) {
      const h = (x[o + j] - m) * rs;
      y[o + j] = h * w[j] + b[j];
      dw[j] += r[o + j] * h;
      db[j] += r[o + j];
      a += r[o + j] * w[j];
      c += r[o + j] * w[j] * h;
    }
    for (let j = 0; j < len; j++) {
      const h = (x[o + j] - m) * rs;
      dx[o + j] = rs * (r[o + j] * w[j] - a / len - h * (c / len));
    }
  }
  return { y, dx, dw, db, mean, rstd };
}

// len 36: 9 vec4 over 16 threads; 164: 41 vec4 over 32 threads, 2 each, the second partial;
// 1028: 9 per thread; 8: 2 threads per row, 128 rows per workgroup; 7 and 45: scalar elements.
const CASES: [number[], number][] = [
  [[3, 37, 36], 36],
  [[2, 19, 164], 164],
  [[4, 11, 1028], 1028],
  [[301, 8], 8],
  [[2, 13, 7], 7],
  [[3, 5, 45], 45],
];

Deno.test("token layer norm: forward and every gradient match float64 on odd shapes", async () => {
  for (const [[...shape], len] of CASES) {
    const n = shape.reduce((p, d) => p * d, 1);
    const seed = n + len;
    const xs = randArray(n, seed, -2, 3), rs = randArray(n, seed + 1);
    const ws = randArray(len, seed + 2, 0.5, 1.5), bs = randArray(len, seed + 3);
    const ref = reference(xs, ws, bs, rs, len);
    const x = parameter(xs, shape), w = parameter(ws, [len]), b = parameter(bs, [len]);
    const y = scope(() => {
      const y = layerNorm(x, { weight: w, bias: b });
      backward(sum(mul(y, tensor(rs, shape))));
      return y;
    });
    const what = `[${shape}]`;
    assertClose(await y.read(), ref.y, { what: `${what} y` });
    assertClose(await x.grad!.read(), ref.dx, { what: `${what} dx`, atol: 2e-4 });
    assertClose(await w.grad!.read(), ref.dw, { what: `${what} dw`, atol: 2e-4, rtol: 1e-4 });
    assertClose(await b.grad!.read(), ref.db, { what: `${what} db`, atol: 2e-4, rtol: 1e-4 });
    for (const t of [x, w, b, y]) t.dispose();
  }
});

Deno.test("token layer norm backward: several row groups per workgroup, partial sums per group", async () => {
  // 2,003 rows of 36: 16 rows per group, 126 row groups, walked 3 at a time by 42 workgroups
  const rows = 2003, len = 36, iters = 3;
  const xs = randArray(rows * len, 7, -2, 2), gs = randArray(rows * len, 8);
  const ws = randArray(len, 9, 0.5, 1.5);
  const ref = reference(xs, ws, new Float32Array(len), gs, len);
  const spec = { rows, len, weight: true, dx: true, dw: true, db: true, iters };
  const groups = tokenNormGradGroups(spec);
  if (groups !== Math.ceil(Math.ceil(rows / tokenTiling(len).rows) / iters)) {
    throw new Error("groups");
  }
  const x = tensor(xs, [rows, len]), g = tensor(gs, [rows, len]), w = tensor(ws, [len]);
  const mean = tensor(Float32Array.from(ref.mean), [rows]);
  const rstd = tensor(Float32Array.from(ref.rstd), [rows]);
  const dx = empty([rows, len]), pw = empty([groups, len]), pb = empty([groups, len]);
  run(tokenNormGradKernel(spec), [x, g, mean, rstd, w], [dx, pw, pb]);
  assertClose(await dx.read(), ref.dx, { what: "dx", atol: 2e-4 });
  const colSums = (p: ArrayLike<number>) => {
    const out = new Float64Array(len);
    for (let i = 0; i < p.length; i++) out[i % len] += p[i];
    return out;
  };
  assertClose(colSums(await pw.read()), ref.dw, { what: "Σ partial dw", atol: 2e-4, rtol: 1e-4 });
  assertClose(colSums(await pb.read()), ref.db, { what: "Σ partial db", atol: 2e-4, rtol: 1e-4 });
  for (const t of [x, g, w, mean, rstd, dx, pw, pb]) t.dispose();
});

Deno.test("token layer norm: finite differences on the vec4 path, with and without affine", async () => {
  const shape = [3, 5, 12];
  const xs = randArray(180, 11, -2, 2);
  await gradCheck((x, w, b) => layerNorm(x, { weight: w, bias: b }), [
    { data: xs, shape },
    { data: randArray(12, 12, 0.5, 1.5), shape: [12] },
    { data: randArray(12, 13), shape: [12] },
  ]);
  await gradCheck((x) => layerNorm(x, { eps: 1e-3 }), [{ data: xs, shape }]);
});
