import assert from "node:assert/strict";
import { initDevice } from "../../engine/device.ts";
import { gemm, type GemmOptions, matmul, type MatmulOptions } from "../../engine/ops/matmul.ts";
import { scope } from "../../engine/scope.ts";
import { empty, type Shape, tensor } from "../../engine/tensor.ts";
import { stridesOf } from "../../kernels/common.ts";
import { broadcastShapes } from "../../kernels/elementwise.ts";
import {
  splitSumKernel,
  splitSumLanes,
  TILE_LARGE,
  type TileConfig,
} from "../../kernels/matmul.ts";
import { run } from "../../engine/launch.ts";
import { planMatmul } from "../../kernels/matmul_plan.ts";
import { H100_PROFILE, withProfile } from "../../kernels/device_profile.ts";
import { assertClose, gradCheck, randArray } from "../util.ts";

await initDevice();

interface Operand {
  data: Float32Array;
  shape: Shape;
}

function actRef(a: MatmulOptions["activation"], v: number): number {
  if (a === "relu") return Math.max(v, 0);
  if (a === "sigmoid") return 1 / (1 + Math.exp(-v));
  if (a === "silu") return v / (1 + Math.exp(-v));
  return v;
}

/** float64 reference of gemm: broadcast batch, transposes, bias, relu, sum to batchShape. */
function reference(a: Operand, b: Operand, o: GemmOptions = {}): Float64Array {
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const [m, k] = o.transA ? [ac, ar] : [ar, ac];
  const n = o.transB ? br : bc;
  const aB = a.shape.slice(0, -2), bB = b.shape.slice(0, -2);
  const full = broadcastShapes(aB, bB);
  const target = o.batchShape ? [...o.batchShape] : full;
  const fullCount = full.reduce((p, d) => p * d, 1);
  const targetCount = target.reduce((p, d) => p * d, 1);
  const out = new Float64Array(targetCount * m * n);
  const coordsOf = (z: number) => {
    const s = stridesOf(full);
    return full.map((d, i) => Math.floor(z / s[i]) % d);
  };
  const flat = (shape: readonly number[], coords: number[]) => {
    const s = stridesOf(shape);
    let off = 0;
    shape.forEach((d, i) => {
      const c = coords[coords.length - shape.length + i];
      off += (d === 1 ? 0 : c) * s[i];
    });
    return off;
  };
  for (let z = 0; z < fullCount; z++) {
    const c = coordsOf(z);
    const aOff = flat(aB, c) * m * k, bOff = flat(bB, c) * k * n;
    const oOff = flat(target, c) * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a.data[aOff + (o.transA ? p * m + i : i * k + p)];
          const bv = b.data[bOff + (o.transB ? j * k + p : p * n + j)];
          s += av * bv;
        }
        out[oOff + i * n + j] += s;
      }
    }
  }
  if (o.bias || o.activation) {
    const bias = o.bias ? (o as { biasData: Float32Array }).biasData : null;
    for (let i = 0; i < out.length; i++) {
      const row = Math.floor(i / n) % m, col = i % n;
      let v = out[i];
      if (bias) v += o.biasAxis === "m" ? bias[row] : bias[col];
      out[i] = actRef(o.activation, v);
    }
  }
  return out;
}

function operand(shape: Shape, seed: number): Operand {
  return { data: randArray(shape.reduce((p, d) => p * d, 1), seed), shape };
}

async function check(
  a: Operand,
  b: Operand,
  o: GemmOptions & { biasData?: Float32Array } = {},
  what = "",
): Promise<void> {
  const out = scope(() => {
    const bias = o.biasData ? tensor(o.biasData) : undefined;
    return gemm(tensor(a.data, a.shape), tensor(b.data, b.shape), { ...o, bias });
  });
  const expected = reference(a, b, { ...o, bias: o.biasData ? out : undefined });
  const k = o.transA ? a.shape.at(-2)! : a.shape.at(-1)!;
  assertClose(await out.read(), expected, { atol: 1e-5 * k, rtol: 1e-4, what });
  out.dispose();
}

const SMALL: TileConfig = { bm: 16, bn: 16, bk: 4, tm: 4, tn: 4 };

Deno.test("matmul odd shapes, every transpose combination, default plan", async () => {
  for (const [m, k, n] of [[7, 13, 5], [33, 65, 17]]) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = operand(transA ? [k, m] : [m, k], m + k);
        const b = operand(transB ? [n, k] : [k, n], n + 3);
        await check(a, b, { transA, transB }, `${m}x${k}x${n} tA=${transA} tB=${transB}`);
      }
    }
  }
});

Deno.test("matmul tile variants on odd shapes (bounds checks, vec4 and scalar loads)", async () => {
  const tiles: TileConfig[] = [
    SMALL,
    { ...SMALL, kFirst: false },
    { bm: 32, bn: 16, bk: 8, tm: 8, tn: 4, swizzle: 2 },
    { ...TILE_LARGE, bm: 32, bn: 32, tm: 4, tn: 4 },
    { ...TILE_LARGE, bm: 32, bn: 64, tm: 4, tn: 8 },
    { ...TILE_LARGE, bm: 16, bn: 64, bk: 8, tm: 4, tn: 4 }, // planMatmul's shallow-K pick
    { ...TILE_LARGE, bm: 16, bn: 32, tm: 4, tn: 4 }, // matmulSmallTiles' candidates
  ];
  // 33x64x20: K % 4 == 0 (vec4 loads along K), 35x66x17: nothing aligned. Each tile takes two
  // transpose layouts in turn, so every layout meets several tiles (compiles are slow here).
  const layouts = [[false, false], [true, true], [false, true], [true, false]];
  for (const [m, k, n] of [[33, 64, 20], [35, 66, 17]]) {
    for (const [t, tile] of tiles.entries()) {
      for (const [transA, transB] of [layouts[t % 4], layouts[(t + 1) % 4]]) {
        const a = operand(transA ? [k, m] : [m, k], 1);
        const b = operand(transB ? [n, k] : [k, n], 2);
        await check(a, b, { transA, transB, tile }, `${m}x${k}x${n} ${JSON.stringify(tile)}`);
      }
    }
  }
});

Deno.test("matmul batch 3 and broadcast batches (2-D operand never copied)", async () => {
  await check(operand([3, 7, 13], 1), operand([3, 13, 5], 2), {}, "batch 3");
  // batched a against a 2-D weight (folds the batch into M)
  await check(operand([3, 7, 12], 3), operand([12, 5], 4), {}, "a batched, b 2-D");
  // 2-D a against a batched b: the 1×1 convolution route W[Co, Ci] × X[B, Ci, HW]
  await check(operand([6, 5], 5), operand([3, 5, 17], 6), {}, "a 2-D, b batched");
  await check(operand([2, 1, 5, 7], 7), operand([3, 7, 4], 8), { transB: false }, "[2,1]×[3]");
  await check(operand([4, 7, 5], 9), operand([9, 7], 10), { transA: true, transB: true }, "tT");
});

Deno.test("matmul summing over broadcast batch dims (gradient shapes)", async () => {
  // Σ_b dY[b]·X[b]ᵀ: the reduced dim cannot fold into K, runs as slices (and split).
  await check(operand([3, 6, 17], 1), operand([3, 5, 17], 2), { transB: true, batchShape: [] });
  await check(operand([3, 6, 17], 1), operand([3, 5, 17], 2), {
    transB: true,
    batchShape: [],
    tile: SMALL,
    split: 3,
  }, "split 3 over slices");
  // matmulSmallTiles' 16×16 tile, 16 threads over 16-deep slabs, split: a weight gradient's form.
  await check(operand([3, 13, 70], 11), operand([3, 9, 70], 12), {
    transB: true,
    batchShape: [],
    tile: { ...TILE_LARGE, bm: 16, bn: 16, tm: 4, tn: 4 },
    split: 5,
  }, "16×16 tile split 5");
  // Σ_b A[b]ᵀ·dC[b]: folds into K.
  await check(operand([3, 7, 5], 3), operand([3, 7, 4], 4), { transA: true, batchShape: [] });
  // partial sums over one of two batch dims
  await check(operand([2, 3, 5, 7], 5), operand([3, 7, 4], 6), { batchShape: [1, 3] });
  await check(operand([2, 3, 5, 7], 5), operand([3, 7, 4], 6), { batchShape: [2, 1] });
});

Deno.test("matmul fused bias and relu, columns and rows, with and without split", async () => {
  const a = operand([3, 9, 13], 1), b = operand([13, 11], 2);
  await check(a, b, { biasData: randArray(11, 3), activation: "relu" }, "bias n + relu");
  await check(a, b, { biasData: randArray(11, 3), tile: SMALL, split: 2 }, "bias n split");
  const w = operand([9, 13], 4), x = operand([2, 13, 21], 5);
  await check(w, x, { biasData: randArray(9, 6), biasAxis: "m", activation: "relu" }, "bias m");
  await check(w, x, {
    biasData: randArray(9, 6),
    biasAxis: "m",
    activation: "relu",
    tile: SMALL,
    split: 3,
  }, "bias m split");
});

Deno.test("matmul fused sigmoid and silu: columns and rows bias, vec4 and scalar stores, split", async () => {
  for (const activation of ["sigmoid", "silu"] as const) {
    const a = operand([2, 7, 13], 1), b = operand([13, 11], 2);
    await check(a, b, { biasData: randArray(11, 3), activation }, `${activation} bias n`);
    const w = operand([9, 5], 4), x = operand([3, 5, 12], 5); // N = 12: vec4 stores
    await check(w, x, { biasData: randArray(9, 6), biasAxis: "m", activation }, `${activation} m`);
    await check(w, x, {
      biasData: randArray(9, 6),
      biasAxis: "m",
      activation,
      tile: SMALL,
      split: 3,
    }, `${activation} bias m split`);
    const out = scope(() => gemm(empty([2, 0]), empty([0, 3]), { activation }));
    assertClose(await out.read(), new Array(6).fill(activation === "sigmoid" ? 0.5 : 0), {
      what: `${activation} over K = 0`,
    });
    out.dispose();
  }
});

Deno.test("matmul aligned 128x128x64 runs the unchecked large tile", async () => {
  const a = operand([128, 64], 1), b = operand([64, 128], 2);
  await check(a, b, { tile: TILE_LARGE }, "aligned large tile");
  await check(
    operand([64, 128], 3),
    operand([128, 64], 4),
    { transA: true, transB: true, tile: TILE_LARGE },
    "aligned large tile, both transposed",
  );
});

Deno.test("matmul over K = 0 gives the epilogue of zeros", async () => {
  const out = scope(() =>
    gemm(empty([2, 3, 0]), empty([0, 4]), { bias: tensor([1, -2, 3, 4]), activation: "relu" })
  );
  assertClose(await out.read(), [
    1,
    0,
    3,
    4,
    1,
    0,
    3,
    4,
    1,
    0,
    3,
    4,
    1,
    0,
    3,
    4,
    1,
    0,
    3,
    4,
    1,
    0,
    3,
    4,
  ]);
  out.dispose();
});

Deno.test("planMatmul picks big tiles for big products and splits long thin reductions", () => {
  if (planMatmul(4096, 4096, 4096).tile.bm !== 128) throw new Error("expected 128 tile");
  const thin = planMatmul(16, 16, 262144, 1, 8);
  if (thin.split < 2) throw new Error(`expected a split, got ${JSON.stringify(thin)}`);
  // Shallow reductions (TinyCD's 1×1 convs): the least padding, 8-deep slabs for K = 24 or 56.
  const shape = (p: { tile: TileConfig }) => `${p.tile.bm}x${p.tile.bn}x${p.tile.bk}`;
  assert.equal(shape(planMatmul(144, 65536, 24, 8)), "16x64x8");
  assert.equal(shape(planMatmul(64, 65536, 64, 8)), "64x128x16");
  assert.equal(shape(planMatmul(336, 4096, 56, 8)), "16x64x8");
  assert.equal(shape(planMatmul(192, 16384, 32, 8)), "64x128x16");
  assert.equal(planMatmul(4096, 4096, 4096).tile, TILE_LARGE, "deep: unchanged");
});

const grad = (opts: MatmulOptions) => (a: Parameters<typeof matmul>[0], b: typeof a) =>
  matmul(a, b, opts);

Deno.test("matmul gradients match finite differences (transposes, broadcast)", async () => {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const [m, k, n] = [5, 7, 3];
      await gradCheck(grad({ transA, transB }), [
        operand(transA ? [2, k, m] : [2, m, k], 1),
        operand(transB ? [n, k] : [k, n], 2),
      ]);
    }
  }
  // 2-D a broadcast against batched b (1×1 convolution shape)
  await gradCheck(grad({}), [operand([4, 5], 3), operand([3, 5, 9], 4)]);
});

Deno.test("matmul bias and relu gradients match finite differences", async () => {
  // Inputs in (0.1, 1) keep the products away from relu's kink.
  const pos = (shape: Shape, seed: number) => ({
    data: randArray(shape.reduce((p, d) => p * d, 1), seed, 0.1, 1),
    shape,
  });
  await gradCheck(
    (a, b, bias) => matmul(a, b, { bias, activation: "relu" }),
    [pos([2, 5, 6], 1), pos([6, 3], 2), pos([3], 3)],
  );
  await gradCheck(
    (w, x, bias) => matmul(w, x, { bias, biasAxis: "m", activation: "relu" }),
    [pos([4, 3], 4), pos([2, 3, 7], 5), pos([4], 6)],
  );
});

Deno.test("matmul sigmoid and silu gradients match finite differences", async () => {
  for (const activation of ["sigmoid", "silu"] as const) {
    await gradCheck(
      (a, b, bias) => matmul(a, b, { bias, activation }),
      [operand([2, 5, 6], 1), operand([6, 3], 2), operand([3], 3)],
    );
    await gradCheck(
      (w, x, bias) => matmul(w, x, { bias, biasAxis: "m", activation }),
      [operand([4, 3], 4), operand([2, 3, 7], 5), operand([4], 6)],
    );
  }
});

Deno.test("split sum over lanes: 100 partial sums of 37 outputs, bias per row and relu", async () => {
  const count = 37, splits = 100, m = 37, n = 1;
  if (splitSumLanes(count, splits) !== 64) throw new Error("expected 64 lanes");
  const part = randArray(count * splits, 5), bias = randArray(m, 6);
  const want = Array.from({ length: count }, (_, i) => {
    let s = 0;
    for (let k = 0; k < splits; k++) s += part[k * count + i];
    return Math.max(0, s + bias[i]);
  });
  const p = tensor(part, [splits, count]), b = tensor(bias, [m]), out = empty([count]);
  const spec = { splits, count, n, m, bias: true, biasRows: true, activation: "relu" as const };
  run(splitSumKernel(spec), [p, b], [out]);
  assertClose(await out.read(), want, { what: "split sum", atol: 1e-4 });
  for (const t of [p, b, out]) t.dispose();
});

Deno.test("planMatmul: the split threshold is the device profile's (a planner experiment)", () => {
  const plan = (f: number) =>
    withProfile({ ...H100_PROFILE, matmulSplitBelowFill: f }, () => planMatmul(256, 256, 8192, 36));
  // A Winograd weight gradient's product: 144 workgroups of 128×128 fill 0.55 of an H100.
  const now = plan(0.5), split = plan(1);
  assert.deepEqual([now.tile.bm, now.tile.bn, now.split], [64, 64, 1]);
  assert.deepEqual([split.tile.bm, split.tile.bn, split.split], [128, 128, 2]);
});

Deno.test("planMatmul: a part-full launch's charge is the device profile's fill exponent", () => {
  const plan = (e: number) =>
    withProfile({ ...H100_PROFILE, matmulFillExponent: e }, () => planMatmul(256, 256, 8192, 36));
  // Linear: 128×128 tiles filling 0.55 of an H100 cost 1.83× their work, more than 64×64's 1/0.75.
  const linear = plan(1), gentle = plan(0.3);
  assert.deepEqual([linear.tile.bm, linear.tile.bn], [64, 64]);
  assert.deepEqual([gentle.tile.bm, gentle.tile.bn, gentle.split], [128, 128, 1]);
});

Deno.test("planMatmul: small tiles only with the device profile's matmulSmallTiles", () => {
  const plan = (on: boolean, m: number, n: number) =>
    withProfile(
      { ...H100_PROFILE, matmulSmallTiles: on },
      () => planMatmul(m, n, 131072, 36),
    );
  // A 16-channel conv's Winograd weight gradient at 8 × 512²: 32×32 tiles, three quarters padding.
  const off = plan(false, 16, 16), on = plan(true, 16, 16);
  assert.deepEqual([off.tile.bm, off.tile.bn], [32, 32]);
  assert.deepEqual([on.tile.bm, on.tile.bn], [16, 16]);
  assert.ok(on.split > off.split, `the smaller tile splits further (${on.split} > ${off.split})`);
  const wide = plan(true, 16, 32);
  assert.deepEqual([wide.tile.bm, wide.tile.bn], [16, 32]);
  // Large products keep their tiles.
  const big = withProfile(
    { ...H100_PROFILE, matmulSmallTiles: true },
    () => planMatmul(4096, 4096, 4096),
  );
  assert.equal(big.tile.bm, 128);
});
