import { backward } from "../../engine/autograd.ts";
import { initDevice } from "../../engine/device.ts";
import { mul } from "../../engine/ops/elementwise.ts";
import { gridSample } from "../../engine/ops/grid_sample.ts";
import { sum } from "../../engine/ops/reduce.ts";
import { scope } from "../../engine/scope.ts";
import { parameter, tensor } from "../../engine/tensor.ts";
import { prod } from "../../kernels/common.ts";
import { assertClose, gradCheck, randArray, rng } from "../util.ts";

await initDevice();

type Shape4 = [number, number, number, number];

/** PyTorch grid_sample (bilinear, zeros, align_corners=True) in float64: output, and the
 * gradients w.r.t. x and grid of Σ g · output. */
function reference(
  x: ArrayLike<number>,
  xs: Shape4,
  grid: ArrayLike<number>,
  gs: Shape4,
  g: ArrayLike<number>,
) {
  const [n, c, h, w] = xs;
  const [, ho, wo] = gs;
  const out = new Float64Array(n * c * ho * wo);
  const dx = new Float64Array(x.length);
  const dgrid = new Float64Array(grid.length);
  for (let b = 0; b < n; b++) {
    for (let q = 0; q < ho * wo; q++) {
      const p = b * ho * wo + q;
      const ix = ((grid[2 * p] + 1) / 2) * (w - 1);
      const iy = ((grid[2 * p + 1] + 1) / 2) * (h - 1);
      const x0 = Math.floor(ix), y0 = Math.floor(iy);
      const fx = ix - x0, fy = iy - y0;
      const corners: [number, number, number, number, number][] = [
        // x, y, weight, d weight / d ix, d weight / d iy
        [x0, y0, (1 - fx) * (1 - fy), -(1 - fy), -(1 - fx)],
        [x0 + 1, y0, fx * (1 - fy), 1 - fy, -fx],
        [x0, y0 + 1, (1 - fx) * fy, -fy, 1 - fx],
        [x0 + 1, y0 + 1, fx * fy, fy, fx],
      ];
      for (let ch = 0; ch < c; ch++) {
        const o = (b * c + ch) * ho * wo + q;
        for (const [cx, cy, wt, dwx, dwy] of corners) {
          if (cx < 0 || cx >= w || cy < 0 || cy >= h) continue;
          const i = (b * c + ch) * h * w + cy * w + cx;
          out[o] += wt * x[i];
          dx[i] += wt * g[o];
          dgrid[2 * p] += g[o] * x[i] * dwx * (w - 1) / 2;
          dgrid[2 * p + 1] += g[o] * x[i] * dwy * (h - 1) / 2;
        }
      }
    }
  }
  return { out, dx, dgrid };
}

/** A grid whose points sit at fractional pixel positions (away from the kinks at whole pixels),
 * some of them in the zero padding just outside the image. */
function fractionalGrid(gs: Shape4, h: number, w: number, seed: number): Float32Array {
  const r = rng(seed);
  const grid = new Float32Array(prod(gs));
  const coord = (size: number) => {
    const cell = Math.floor(r() * (size + 1)) - 1; // −1 … size−1: border cells half outside
    return (2 * (cell + 0.25 + 0.5 * r())) / (size - 1) - 1;
  };
  for (let p = 0; p < grid.length / 2; p++) {
    grid[2 * p] = coord(w);
    grid[2 * p + 1] = coord(h);
  }
  return grid;
}

Deno.test("gridSample with an identity grid returns the image", async () => {
  const xs: Shape4 = [2, 3, 7, 9];
  const data = randArray(prod(xs), 1);
  const grid: number[] = [];
  for (let b = 0; b < 2; b++) {
    for (let i = 0; i < 7; i++) for (let j = 0; j < 9; j++) grid.push(j / 4 - 1, i / 3 - 1);
  }
  const out = scope(() => gridSample(tensor(data, xs), tensor(grid, [2, 7, 9, 2])));
  assertClose(await out.read(), data, { what: "identity" });
  out.dispose();
});

Deno.test("gridSample forward and both gradients match a float64 reference", async () => {
  const xs: Shape4 = [2, 3, 7, 9], gs: Shape4 = [2, 5, 3, 2];
  const data = randArray(prod(xs), 2);
  // arbitrary points, many outside [-1, 1], plus an exact corner and the centre
  const gridData = randArray(prod(gs), 3, -1.3, 1.3);
  gridData.set([-1, -1, 1, 1, 0, 0], 0);
  const gData = randArray(2 * 3 * 5 * 3, 4);
  const ref = reference(data, xs, gridData, gs, gData);
  const x = parameter(data, xs), grid = parameter(gridData, gs);
  const weights = tensor(gData, [2, 3, 5, 3]);
  const y = scope(() => {
    const y = gridSample(x, grid);
    backward(sum(mul(y, weights)));
    return y;
  });
  assertClose(y.shape, [2, 3, 5, 3], { what: "shape" });
  assertClose(await y.read(), ref.out, { what: "forward" });
  assertClose(await x.grad!.read(), ref.dx, { what: "d x" });
  assertClose(await grid.grad!.read(), ref.dgrid, { what: "d grid", atol: 1e-4 });
  for (const t of [x, grid, weights, y]) t.dispose();
});

Deno.test("gridSample gradients w.r.t. image and grid match finite differences", async () => {
  const xs: Shape4 = [2, 2, 4, 5], gs: Shape4 = [2, 3, 2, 2];
  await gradCheck(gridSample, [
    { data: randArray(prod(xs), 5), shape: xs },
    { data: fractionalGrid(gs, 4, 5, 6), shape: gs },
  ], { maxPoints: 48 });
});

Deno.test("gridSample gradient w.r.t. the image alone (grid constant)", async () => {
  const xs: Shape4 = [1, 3, 5, 3], gs: Shape4 = [1, 4, 3, 2];
  const grid = fractionalGrid(gs, 5, 3, 7);
  await gradCheck((x) => {
    const g = tensor(grid, gs);
    return gridSample(x, g);
  }, [{ data: randArray(prod(xs), 8), shape: xs }]);
});
