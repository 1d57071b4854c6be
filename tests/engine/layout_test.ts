import { initDevice } from "../../engine/device.ts";
import {
  absDiff,
  concat,
  flip,
  interleaveChannels,
  pad2d,
  permute,
  rot90,
  slice,
  transpose,
} from "../../engine/ops/layout.ts";
import { scope } from "../../engine/scope.ts";
import { type Tensor, tensor } from "../../engine/tensor.ts";
import { prod, stridesOf } from "../../kernels/common.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

const X = [2, 3, 7, 9];

/** Float64 reference tensor: out[idx] = fn(idx) over `shape`. */
function build(shape: number[], fn: (idx: number[]) => number): Float64Array {
  const out = new Float64Array(prod(shape));
  const idx = new Array(shape.length).fill(0);
  for (let i = 0; i < out.length; i++) {
    out[i] = fn(idx);
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

function at(data: ArrayLike<number>, shape: number[], idx: number[]): number {
  const s = stridesOf(shape);
  return data[idx.reduce((o, v, k) => o + v * s[k], 0)];
}

async function check(out: Tensor, expected: ArrayLike<number>, what: string, shape?: number[]) {
  if (shape) assertClose(out.shape, shape, { what: `${what} shape` });
  assertClose(await out.read(), expected, { what, atol: 0, rtol: 0 });
  out.dispose();
}

const input = (shape: number[], seed: number) => ({ data: randArray(prod(shape), seed), shape });

Deno.test("concat on every axis matches a float64 reference", async () => {
  for (let axis = 0; axis < 4; axis++) {
    const shapes = [2, 1, 3].map((n) => X.map((d, k) => (k === axis ? n : d)));
    const datas = shapes.map((s, j) => randArray(prod(s), 10 + j));
    const outShape = X.map((d, k) => (k === axis ? 6 : d));
    const expected = build(outShape, (idx) => {
      let p = idx[axis];
      for (let j = 0; j < 3; j++) {
        if (p < shapes[j][axis]) {
          return at(datas[j], shapes[j], idx.map((v, k) => (k === axis ? p : v)));
        }
        p -= shapes[j][axis];
      }
      throw new Error("unreachable");
    });
    const out = scope(() =>
      concat(datas.map((d, j) => tensor(d, shapes[j])), axis - 4 * (axis % 2))
    );
    await check(out, expected, `concat axis ${axis}`, outShape);
  }
});

Deno.test("concat gradient on channels and width", async () => {
  await gradCheck((a, b) => concat([a, b], 1), [input([2, 3, 3, 5], 1), input([2, 2, 3, 5], 2)]);
  await gradCheck((a, b) => concat([a, b], 3), [input([1, 2, 3, 5], 3), input([1, 2, 3, 1], 4)]);
});

Deno.test("copies of aligned runs of 4 (vec4 path): concat, slice, flip, permute, interleave", async () => {
  const shape = [2, 3, 5, 4];
  const a = randArray(prod(shape), 90), b = randArray(prod(shape), 91);
  const ints = Array.from({ length: prod(shape) }, (_, i) => i * 3);
  const ta = () => tensor(a, shape), tb = () => tensor(b, shape);
  await check(
    scope(() => concat([ta(), tb()], 1)),
    build([2, 6, 5, 4], ([n, c, h, w]) => at(c < 3 ? a : b, shape, [n, c % 3, h, w])),
    "concat",
  );
  await check(
    scope(() => slice(ta(), 1, 1, 3)),
    build([2, 2, 5, 4], ([n, c, h, w]) => at(a, shape, [n, c + 1, h, w])),
    "slice",
  );
  await check(
    scope(() => flip(tensor(ints, shape, "u32"), [2])),
    build(shape, ([n, c, h, w]) => at(ints, shape, [n, c, 4 - h, w])),
    "flip H u32",
  );
  await check(
    scope(() => permute(ta(), [1, 0, 2, 3])),
    build([3, 2, 5, 4], ([c, n, h, w]) => at(a, shape, [n, c, h, w])),
    "permute",
  );
  await check(
    scope(() => interleaveChannels(ta(), tb())),
    build([2, 6, 5, 4], ([n, c, h, w]) => at(c % 2 ? b : a, shape, [n, c >> 1, h, w])),
    "interleave",
  );
});

Deno.test("slice on every axis, negative indices included", async () => {
  const data = randArray(prod(X), 20);
  const cases: [number, number, number][] = [[0, 1, 2], [1, -2, 3], [2, 2, 6], [3, -8, -1]];
  for (const [axis, start, end] of cases) {
    const n = X[axis];
    const s = start < 0 ? start + n : start, e = end < 0 ? end + n : end;
    const shape = X.map((d, k) => (k === axis ? e - s : d));
    const expected = build(
      shape,
      (idx) => at(data, X, idx.map((v, k) => (k === axis ? v + s : v))),
    );
    const out = scope(() => slice(tensor(data, X), axis, start, end));
    await check(out, expected, `slice axis ${axis}`, shape);
  }
});

Deno.test("slice gradient", async () => {
  await gradCheck((x) => slice(x, 2, 1, 4), [input([2, 3, 5, 3], 5)]);
  await gradCheck((x) => slice(x, 1, 1, 3), [input([2, 3, 3, 3], 6)]);
});

Deno.test("permute and transpose match a float64 reference", async () => {
  const data = randArray(prod(X), 30);
  for (const dims of [[0, 2, 3, 1], [3, 1, 0, 2], [0, 1, 3, 2]]) {
    const shape = dims.map((d) => X[d]);
    const expected = build(shape, (idx) => {
      const src = new Array(4);
      dims.forEach((d, k) => (src[d] = idx[k]));
      return at(data, X, src);
    });
    const out = scope(() => permute(tensor(data, X), dims));
    await check(out, expected, `permute ${dims}`, shape);
  }
  const t = scope(() => transpose(tensor(data, X), 1, -1));
  const expected = build([2, 9, 7, 3], ([n, w, h, c]) => at(data, X, [n, c, h, w]));
  await check(t, expected, "transpose", [2, 9, 7, 3]);
});

Deno.test("permute through the tiled transpose (NCHW → NHWC, last two axes, tokens)", async () => {
  const cases: [number[], number[]][] = [
    [[2, 11, 5, 9], [0, 2, 3, 1]],
    [[3, 33, 10], [0, 2, 1]],
    [[37, 1, 41], [2, 1, 0]],
  ];
  for (const [shape, dims] of cases) {
    const data = randArray(prod(shape), 31);
    const outShape = dims.map((d) => shape[d]);
    const expected = build(outShape, (idx) => {
      const src = new Array(shape.length);
      dims.forEach((d, k) => (src[d] = idx[k]));
      return at(data, shape, src);
    });
    const out = scope(() => permute(tensor(data, shape), dims));
    await check(out, expected, `permute ${shape} by ${dims}`, outShape);
  }
});

Deno.test("permute gradient, strided and tiled", async () => {
  await gradCheck((x) => permute(x, [2, 0, 3, 1]), [input([2, 3, 3, 5], 7)]);
  await gradCheck((x) => permute(x, [0, 2, 1]), [input([1, 9, 10], 7)]);
});

Deno.test("interleaveChannels is torch.stack((a, b), 2).reshape(B, 2C, H, W)", async () => {
  const shape = [2, 5, 7, 9];
  const a = randArray(prod(shape), 40), b = randArray(prod(shape), 41);
  const expected = build(
    [2, 10, 7, 9],
    ([n, c, h, w]) => at(c % 2 ? b : a, shape, [n, c >> 1, h, w]),
  );
  const out = scope(() => interleaveChannels(tensor(a, shape), tensor(b, shape)));
  await check(out, expected, "interleave", [2, 10, 7, 9]);
  await gradCheck(interleaveChannels, [input([2, 3, 3, 5], 8), input([2, 3, 3, 5], 9)]);
});

Deno.test("absDiff forward, broadcasting and gradient", async () => {
  const a = randArray(prod(X), 50), b = randArray(prod(X), 51);
  const out = scope(() => absDiff(tensor(a, X), tensor(b, X)));
  assertClose(await out.read(), Array.from(a, (v, i) => Math.abs(v - b[i])), { what: "absDiff" });
  out.dispose();
  // keep a − b away from 0 so the finite difference does not straddle the kink
  const ga = randArray(30, 52).map((v) => v + Math.sign(v) * 0.1);
  const gb = randArray(30, 53).map((v) => v * 0.05);
  await gradCheck(absDiff, [{ data: ga, shape: [2, 3, 5] }, { data: gb, shape: [2, 3, 5] }]);
  const row = Float32Array.from([0.01, -0.02, 0.03, 0, 0.02]);
  await gradCheck(absDiff, [{ data: ga, shape: [2, 3, 5] }, { data: row, shape: [5] }]);
});

const padCases: [number, number, number, number][] = [[1, 2, 3, 0], [0, 3, 1, 2], [-1, 2, -2, 1], [
  -2,
  -1,
  0,
  -3,
]];

Deno.test("pad2d zeros and replicate, crops included, match a float64 reference", async () => {
  const data = randArray(prod(X), 60);
  for (const mode of ["zeros", "replicate"] as const) {
    for (const [l, r, t, b] of padCases) {
      const shape = [2, 3, 7 + t + b, 9 + l + r];
      const expected = build(shape, ([n, c, h, w]) => {
        let ih = h - t, iw = w - l;
        if (mode === "replicate") {
          ih = Math.min(Math.max(ih, 0), 6);
          iw = Math.min(Math.max(iw, 0), 8);
        } else if (ih < 0 || ih > 6 || iw < 0 || iw > 8) return 0;
        return at(data, X, [n, c, ih, iw]);
      });
      const out = scope(() => pad2d(tensor(data, X), [l, r, t, b], mode));
      await check(out, expected, `pad2d ${mode} ${[l, r, t, b]}`, shape);
    }
  }
  const labels = Array.from({ length: 35 }, (_, i) => i * 7 + 1);
  const out = scope(() => pad2d(tensor(labels, [5, 7], "u32"), [1, 0, 0, 1], "replicate"));
  assertClose(out.shape, [6, 8]);
  const got = await out.read();
  assertClose([got[0], got[1], got[8], got[47]], [1, 1, 50, 239], { what: "u32 pad" });
  out.dispose();
});

Deno.test("pad2d gradient, zeros and replicate, padding and cropping", async () => {
  for (const mode of ["zeros", "replicate"] as const) {
    await gradCheck((x) => pad2d(x, [2, 1, 1, 2], mode), [input([1, 2, 3, 5], 11)], {
      maxPoints: 30,
    });
    await gradCheck((x) => pad2d(x, [-1, 2, 1, -2], mode), [input([1, 2, 5, 3], 12)], {
      maxPoints: 30,
    });
  }
});

Deno.test("flip on H, W, both and channels, f32 and u32", async () => {
  const data = randArray(prod(X), 70);
  const ints = Array.from({ length: prod(X) }, (_, i) => (i * 37) % 1000);
  for (const axes of [[3], [2], [2, 3], [1, -1]]) {
    const norm = axes.map((a) => (a + 4) % 4);
    const src = (idx: number[]) => idx.map((v, k) => (norm.includes(k) ? X[k] - 1 - v : v));
    const out = scope(() => flip(tensor(data, X), axes));
    await check(out, build(X, (idx) => at(data, X, src(idx))), `flip ${axes}`, X);
    const outU = scope(() => flip(tensor(ints, X, "u32"), axes));
    assertClose(outU.shape, X);
    await check(outU, build(X, (idx) => at(ints, X, src(idx))), `flip u32 ${axes}`);
  }
  await gradCheck((x) => flip(x, [2, 3]), [input([1, 2, 3, 5], 13)]);
});

/** torch.rot90(x, 1, dims=(2, 3)) is x.flip(3).transpose(2, 3); k = 2, 3 compose it. */
function rot90Ref(data: Float64Array, shape: number[], k: number): [Float64Array, number[]] {
  let d = data, s = shape;
  for (let j = 0; j < ((k % 4) + 4) % 4; j++) {
    const [n, c, h, w] = s;
    const prev = d, ps = s;
    s = [n, c, w, h];
    d = build(s, ([a, b, i, jj]) => at(prev, ps, [a, b, jj, w - 1 - i]));
  }
  return [d, s];
}

Deno.test("rot90 for k = 0..3, negative and large k, f32 and u32, strided and tiled", async () => {
  for (const shape of [X, [2, 3, 37, 41]]) {
    const data = randArray(prod(shape), 80);
    const ints = Array.from({ length: prod(shape) }, (_, i) => i);
    for (const k of [0, 1, 2, 3, -1, 5]) {
      const [expected, outShape] = rot90Ref(Float64Array.from(data), shape, k);
      const out = scope(() => rot90(tensor(data, shape), k));
      await check(out, expected, `rot90 ${shape} k=${k}`, outShape);
      const [expectedU] = rot90Ref(Float64Array.from(ints), shape, k);
      const outU = scope(() => rot90(tensor(ints, shape, "u32"), k));
      await check(outU, expectedU, `rot90 u32 ${shape} k=${k}`, outShape);
    }
  }
  for (const k of [1, 2, 3]) await gradCheck((x) => rot90(x, k), [input([1, 2, 3, 5], 14)]);
  for (const k of [1, 3]) await gradCheck((x) => rot90(x, k), [input([1, 1, 9, 10], 15)]);
});
