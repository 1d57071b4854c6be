import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { interpolate, type InterpolateOptions } from "../../engine/ops/resample.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

interface Tap {
  i0: number;
  i1: number;
  l0: number;
  l1: number;
}

/** PyTorch's upsample source indices along one axis (aten/src/ATen/native/UpSample.h),
 * written out in float64 except where PyTorch rounds to float on purpose (nearest). */
function taps(inS: number, outS: number, o: InterpolateOptions, scale?: number): Tap[] {
  const result: Tap[] = [];
  for (let d = 0; d < outS; d++) {
    if (o.mode === "nearest") {
      const ratio = Math.fround(scale ? 1 / scale : inS / outS);
      let i = Math.min(Math.floor(Math.fround(d * ratio)), inS - 1);
      if (outS === inS) i = d;
      else if (outS === 2 * inS) i = d >> 1;
      result.push({ i0: i, i1: i, l0: 1, l1: 0 });
      continue;
    }
    let src: number;
    if (o.alignCorners) src = outS > 1 ? ((inS - 1) / (outS - 1)) * d : 0;
    else src = Math.max((scale ? 1 / scale : inS / outS) * (d + 0.5) - 0.5, 0);
    const i0 = Math.min(Math.floor(src), inS - 1);
    const l1 = Math.min(Math.max(src - i0, 0), 1);
    result.push({ i0, i1: i0 < inS - 1 ? i0 + 1 : i0, l0: 1 - l1, l1 });
  }
  return result;
}

interface Case {
  shape: [number, number, number, number];
  opts: InterpolateOptions;
}

function outSize(c: Case): [number, number] {
  const [, , h, w] = c.shape;
  if (c.opts.size) return [c.opts.size[0], c.opts.size[1]];
  const s = c.opts.scale as number;
  return [Math.floor(h * s), Math.floor(w * s)];
}

/** The float64 resampling matrix of each axis, applied forward (x → y) or as its adjoint. */
function reference(c: Case, data: ArrayLike<number>, adjoint: boolean): Float64Array {
  const [n, ch, h, w] = c.shape;
  const [ho, wo] = outSize(c);
  const th = taps(h, ho, c.opts, c.opts.scale as number | undefined);
  const tw = taps(w, wo, c.opts, c.opts.scale as number | undefined);
  const out = new Float64Array(n * ch * (adjoint ? h * w : ho * wo));
  for (let p = 0; p < n * ch; p++) {
    for (let oh = 0; oh < ho; oh++) {
      for (let ow = 0; ow < wo; ow++) {
        const a = th[oh], b = tw[ow];
        const terms: [number, number, number][] = [
          [a.i0, b.i0, a.l0 * b.l0],
          [a.i0, b.i1, a.l0 * b.l1],
          [a.i1, b.i0, a.l1 * b.l0],
          [a.i1, b.i1, a.l1 * b.l1],
        ];
        const o = p * ho * wo + oh * wo + ow;
        for (const [ih, iw, wt] of terms) {
          const i = p * h * w + ih * w + iw;
          if (adjoint) out[i] += wt * data[o];
          else out[o] += wt * data[i];
        }
      }
    }
  }
  return out;
}

const B = [2, 3, 7, 9] as [number, number, number, number];
const cases: [string, Case][] = [
  ["bilinear ×2 up", { shape: B, opts: { mode: "bilinear", scale: 2 } }],
  ["bilinear ×2 up, align corners", {
    shape: B,
    opts: { mode: "bilinear", scale: 2, alignCorners: true },
  }],
  ["bilinear down to 4×5", { shape: B, opts: { mode: "bilinear", size: [4, 5] } }],
  ["bilinear down to 4×5, align corners", {
    shape: B,
    opts: { mode: "bilinear", size: [4, 5], alignCorners: true },
  }],
  ["bilinear up to 10×13", { shape: B, opts: { mode: "bilinear", size: [10, 13] } }],
  ["bilinear to 3×1, align corners", {
    shape: B,
    opts: { mode: "bilinear", size: [3, 1], alignCorners: true },
  }],
  ["bilinear from one row, align corners", {
    shape: [2, 3, 1, 9],
    opts: { mode: "bilinear", size: [4, 5], alignCorners: true },
  }],
  ["bilinear scale 0.6 (1/scale ≠ in/out)", {
    shape: B,
    opts: { mode: "bilinear", scale: 0.6 },
  }],
  ["nearest ×2 up", { shape: B, opts: { mode: "nearest", scale: 2 } }],
  ["nearest down to 4×5", { shape: B, opts: { mode: "nearest", size: [4, 5] } }],
  ["nearest up to 10×13", { shape: B, opts: { mode: "nearest", size: [10, 13] } }],
  ["nearest scale 1.5", { shape: B, opts: { mode: "nearest", scale: 1.5 } }],
  ["nearest same size", { shape: [2, 5, 7, 9], opts: { mode: "nearest", size: [7, 9] } }],
];

Deno.test("interpolate of a 2×2 ramp reproduces PyTorch's printed outputs", async () => {
  const x = [0, 1, 2, 3];
  const half = scope(() => interpolate(tensor(x, [1, 1, 2, 2]), { mode: "bilinear", scale: 2 }));
  assertClose(await half.read(), [
    ...[0, 0.25, 0.75, 1],
    ...[0.5, 0.75, 1.25, 1.5],
    ...[1.5, 1.75, 2.25, 2.5],
    ...[2, 2.25, 2.75, 3],
  ]);
  const corners = scope(() =>
    interpolate(tensor(x, [1, 1, 2, 2]), { mode: "bilinear", scale: 2, alignCorners: true })
  );
  assertClose(
    await corners.read(),
    [0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9].map((v) => v / 3),
  );
  half.dispose();
  corners.dispose();
});

for (const [name, c] of cases) {
  Deno.test(`interpolate ${name}: forward and input gradient match float64 references`, async () => {
    const [n, ch, h, w] = c.shape;
    const [ho, wo] = outSize(c);
    const data = randArray(n * ch * h * w, 1);
    const g = randArray(n * ch * ho * wo, 2);
    const x = parameter(data, c.shape);
    const weights = tensor(g, [n, ch, ho, wo]);
    const y = scope(() => {
      const y = interpolate(x, c.opts);
      backward(sum(mul(y, weights)));
      return y;
    });
    assertClose(y.shape, [n, ch, ho, wo], { what: "shape" });
    assertClose(await y.read(), reference(c, data, false), { what: `${name} forward` });
    assertClose(await x.grad!.read(), reference(c, g, true), { what: `${name} gradient` });
    for (const t of [x, weights, y]) t.dispose();
  });
}

Deno.test("interpolate gradients match finite differences", async () => {
  const x = { data: randArray(2 * 3 * 5, 3), shape: [1, 2, 3, 5] };
  await gradCheck((t) => interpolate(t, { mode: "bilinear", scale: 2 }), [x]);
  await gradCheck(
    (t) => interpolate(t, { mode: "bilinear", size: [2, 4], alignCorners: true }),
    [x],
  );
  await gradCheck((t) => interpolate(t, { mode: "nearest", size: [5, 3] }), [x]);
});

Deno.test("interpolate rejects contradictory options", () => {
  const x = tensor(randArray(4, 4), [1, 1, 2, 2]);
  const bad: InterpolateOptions[] = [
    { mode: "bilinear" },
    { mode: "bilinear", scale: 2, size: [4, 4] },
    { mode: "nearest", scale: 2, alignCorners: true },
    { mode: "bilinear", scale: 0.1 },
  ];
  for (const o of bad) {
    let threw = false;
    try {
      interpolate(x, o);
    } catch {
      threw = true;
    }
    if (!threw) throw new Error(`accepted ${JSON.stringify(o)}`);
  }
  x.dispose();
});
